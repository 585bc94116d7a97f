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

/// Shape and values of a TensorProto.
pub fn tensor_data(t: &pb::TensorProto) -> Result<(Vec<usize>, Data)> {
    let bad = |reason: String| Error::BadTensor { name: t.name.clone(), reason };
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(bad("external data is not supported; save the model with its weights inside".into()));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| bad(format!("negative dim in {:?}", t.dims)))?);
    }
    let n = checked_numel(&shape).ok_or_else(|| bad(format!("dims {:?} overflow", t.dims)))?;
    use pb::tensor_proto::DataType as D;
    let dt = D::try_from(t.data_type).map_err(|_| bad(format!("unknown data type {}", t.data_type)))?;
    let raw = &t.raw_data;
    let width = match dt {
        D::Float | D::Int32 | D::Uint32 => 4,
        D::Double | D::Int64 | D::Uint64 => 8,
        D::Float16 | D::Bfloat16 | D::Int16 | D::Uint16 => 2,
        D::Int8 | D::Uint8 | D::Bool => 1,
        other => return Err(bad(format!("data type {} is not supported", other.as_str_name()))),
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
