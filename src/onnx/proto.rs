//! Reading ModelProto files and turning TensorProtos into data, checking every declared size
//! against the bytes actually present before allocating.

use std::path::Path;

use prost::Message;

use super::pb;
use crate::error::{Error, Result};
use crate::tensor::checked_numel;

/// Decodes an ONNX file.
pub fn read(path: &Path) -> Result<pb::ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

/// Decodes ONNX bytes; `path` is used in messages.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<pb::ModelProto> {
    let bad = |reason: String| Error::OnnxDecode { path: path.to_path_buf(), reason };
    let m = pb::ModelProto::decode(bytes).map_err(|e| bad(e.to_string()))?;
    if m.graph.is_none() {
        return Err(bad("the model has no graph (is this an ONNX file?)".into()));
    }
    Ok(m)
}

/// A decoded constant: floats or integers, with its shape.
#[derive(Clone, Debug)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// Reads the bytes of a tensor stored outside the model (`data_location = EXTERNAL`): the
/// `location` is resolved inside `base_dir` (absolute paths and `..` are refused), and
/// `offset`/`length` are checked against the file's size before anything is allocated.
fn external_bytes(t: &pb::TensorProto, base_dir: Option<&Path>, expect: usize) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::BadTensor { name: t.name.clone(), reason };
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
    let loc = get("location").ok_or_else(|| bad("external data without a location".into()))?;
    let rel = Path::new(loc);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(bad(format!("external data location '{loc}' must be a plain relative path")));
    }
    let base = base_dir.ok_or_else(|| bad("external data needs the model's directory (load it from a file)".into()))?;
    let path = base.join(rel);
    let num = |k: &str| -> Result<Option<u64>> {
        get(k).map(|v| v.parse::<u64>().map_err(|_| bad(format!("external data {k} '{v}' is not a number")))).transpose()
    };
    let offset = num("offset")?.unwrap_or(0);
    let file_len = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    let length = num("length")?.unwrap_or(file_len.saturating_sub(offset));
    if length != expect as u64 {
        return Err(bad(format!("external data length {length} differs from the {expect} bytes its dims declare")));
    }
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(bad(format!("external data [{offset}, +{length}) runs past the end of {} ({file_len} bytes)", path.display())));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&path, e))?;
    let mut buf = vec![0u8; expect];
    f.read_exact(&mut buf).map_err(|e| Error::io(&path, e))?;
    Ok(buf)
}

/// Moves every externally stored initializer's bytes into the model (for tools that get the
/// model as bytes, such as ORT sessions built from memory).
pub fn inline_external(m: &mut pb::ModelProto, base_dir: &Path) -> Result<()> {
    let Some(g) = m.graph.as_mut() else { return Ok(()) };
    for t in g.initializer.iter_mut().filter(|t| t.data_location == 1) {
        let n = t.dims.iter().try_fold(1usize, |a, &d| usize::try_from(d).ok().and_then(|d| a.checked_mul(d)));
        let width = match pb::tensor_proto::DataType::try_from(t.data_type) {
            Ok(pb::tensor_proto::DataType::Double | pb::tensor_proto::DataType::Int64 | pb::tensor_proto::DataType::Uint64) => 8,
            Ok(pb::tensor_proto::DataType::Float | pb::tensor_proto::DataType::Int32 | pb::tensor_proto::DataType::Uint32) => 4,
            Ok(pb::tensor_proto::DataType::Float16 | pb::tensor_proto::DataType::Bfloat16 | pb::tensor_proto::DataType::Int16 | pb::tensor_proto::DataType::Uint16) => 2,
            _ => 1,
        };
        let expect = n.and_then(|n| n.checked_mul(width)).ok_or_else(|| Error::BadTensor { name: t.name.clone(), reason: format!("dims {:?} overflow", t.dims) })?;
        t.raw_data = external_bytes(t, Some(base_dir), expect)?;
        t.data_location = 0;
        t.external_data.clear();
    }
    Ok(())
}

/// Shape and values of a TensorProto whose data is inline.
pub fn tensor_data(t: &pb::TensorProto) -> Result<(Vec<usize>, Data)> {
    tensor_data_in(t, None)
}

/// Shape and values of a TensorProto; external data is read from `base_dir`.
pub fn tensor_data_in(t: &pb::TensorProto, base_dir: Option<&Path>) -> Result<(Vec<usize>, Data)> {
    let bad = |reason: String| Error::BadTensor { name: t.name.clone(), reason };
    let external = t.data_location == 1;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| bad(format!("negative dim in {:?}", t.dims)))?);
    }
    let n = checked_numel(&shape).ok_or_else(|| bad(format!("dims {:?} overflow", t.dims)))?;
    use pb::tensor_proto::DataType as D;
    let dt = D::try_from(t.data_type).map_err(|_| bad(format!("unknown data type {}", t.data_type)))?;
    let width = match dt {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 => 8,
        D::Float16 | D::Bfloat16 | D::Int16 | D::Uint16 => 2,
        D::Int8 | D::Uint8 | D::Bool => 1,
        other => return Err(bad(format!("data type {} is not supported", other.as_str_name()))),
    };
    let ext;
    let raw: &Vec<u8> = if external {
        let expect = n.checked_mul(width).ok_or_else(|| bad(format!("dims {:?} overflow", t.dims)))?;
        ext = external_bytes(t, base_dir, expect)?;
        &ext
    } else {
        &t.raw_data
    };
    let have = if !raw.is_empty() {
        raw.len() / width
    } else {
        match dt {
            D::Float => t.float_data.len(),
            D::Double => t.double_data.len(),
            D::Int64 => t.int64_data.len(),
            D::Uint64 => t.uint64_data.len(),
            _ => t.int32_data.len(),
        }
    };
    if (!raw.is_empty() && raw.len() != n * width) || have != n {
        return Err(bad(format!("dims {shape:?} declare {n} values but the data holds {have}")));
    }
    let le = |i: usize| &raw[i * width..(i + 1) * width];
    let data = match dt {
        D::Float if !raw.is_empty() => Data::F32((0..n).map(|i| f32::from_le_bytes(le(i).try_into().unwrap_or([0; 4]))).collect()),
        D::Float => Data::F32(t.float_data.clone()),
        D::Double if !raw.is_empty() => {
            Data::F32((0..n).map(|i| f64::from_le_bytes(le(i).try_into().unwrap_or([0; 8])) as f32).collect())
        }
        D::Double => Data::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        D::Float16 | D::Bfloat16 => {
            let bits: Vec<u16> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                (0..n).map(|i| u16::from_le_bytes([le(i)[0], le(i)[1]])).collect()
            };
            let f = if dt == D::Float16 {
                bits.iter().map(|&b| half::f16::from_bits(b).to_f32()).collect()
            } else {
                bits.iter().map(|&b| half::bf16::from_bits(b).to_f32()).collect()
            };
            Data::F32(f)
        }
        D::Int64 if !raw.is_empty() => Data::I64((0..n).map(|i| i64::from_le_bytes(le(i).try_into().unwrap_or([0; 8]))).collect()),
        D::Int64 => Data::I64(t.int64_data.clone()),
        D::Uint64 if raw.is_empty() => Data::I64(t.uint64_data.iter().map(|&v| v as i64).collect()),
        D::Int32 if !raw.is_empty() => Data::I64((0..n).map(|i| i64::from(i32::from_le_bytes(le(i).try_into().unwrap_or([0; 4])))).collect()),
        D::Int8 if !raw.is_empty() => Data::I64(raw.iter().map(|&b| i64::from(b as i8)).collect()),
        D::Uint8 | D::Bool if !raw.is_empty() => Data::I64(raw.iter().map(|&b| i64::from(b)).collect()),
        D::Uint64 => Data::I64((0..n).map(|i| u64::from_le_bytes(le(i).try_into().unwrap_or([0; 8])) as i64).collect()),
        D::Uint32 if !raw.is_empty() => Data::I64((0..n).map(|i| i64::from(u32::from_le_bytes(le(i).try_into().unwrap_or([0; 4])))).collect()),
        D::Int16 if !raw.is_empty() => Data::I64((0..n).map(|i| i64::from(i16::from_le_bytes([le(i)[0], le(i)[1]]))).collect()),
        D::Uint16 if !raw.is_empty() => Data::I64((0..n).map(|i| i64::from(u16::from_le_bytes([le(i)[0], le(i)[1]]))).collect()),
        _ => Data::I64(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
    };
    Ok((shape, data))
}
