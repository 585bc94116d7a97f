//! NVRTC, loaded at run time with `libloading` (the library comes from the
//! `nvidia-cuda-nvrtc-cu12` pip wheel, a CUDA toolkit, or `KESTREL_NVRTC`): compiles a kernel
//! source to a CUBIN for one architecture without needing a GPU, returns NVRTC's log (with
//! `--ptxas-options=-v`, each kernel's registers, spills and shared memory, which
//! [`KernelUsage::parse`] reads), and caches the CUBIN on disk keyed by the source, the
//! architecture and the NVRTC version.
//!
//! kestrel loads NVRTC itself rather than through `cudarc::nvrtc`: cudarc only finds the
//! library by name on the loader's path and returns PTX from its safe API, while kestrel needs
//! an explicit path (the wheel installs outside the loader's path), CUBIN output and the log of
//! a successful compile.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

use crate::error::{Error, Result};

type Program = *mut c_void;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type CreateFn = unsafe extern "C" fn(*mut Program, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> c_int;
type CompileFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type SizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type BytesFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Program) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// The NVRTC library and the entry points kestrel calls.
pub struct Nvrtc {
    version: VersionFn,
    create: CreateFn,
    compile: CompileFn,
    log_size: SizeFn,
    log: BytesFn,
    cubin_size: SizeFn,
    cubin: BytesFn,
    destroy: DestroyFn,
    error_string: ErrorStringFn,
    /// Where it was loaded from.
    pub path: String,
    // Keeps the entry points above valid: dropped last.
    _lib: libloading::Library,
}

/// A compiled translation unit: the CUBIN and NVRTC's log.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub log: String,
}

/// One kernel's resources as `ptxas -v` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelUsage {
    /// The (mangled, or `extern "C"`) entry name.
    pub name: String,
    pub registers: usize,
    pub spill_stores: usize,
    pub spill_loads: usize,
    /// Static shared memory in bytes.
    pub smem: usize,
}

const NOT_FOUND: &str = "NVRTC not found: install the nvidia-cuda-nvrtc-cu12 wheel (pip install nvidia-cuda-nvrtc-cu12) or a CUDA toolkit, or set KESTREL_NVRTC to the path of libnvrtc.so";

impl Nvrtc {
    /// Loads NVRTC from `KESTREL_NVRTC` (a file path) when set, else by name from the loader's
    /// path (`libnvrtc.so`, `.so.12`, `.so.13`).
    pub fn load() -> Result<Nvrtc> {
        match std::env::var_os("KESTREL_NVRTC") {
            Some(p) => Nvrtc::load_from(&PathBuf::from(p).to_string_lossy()),
            None => {
                let mut last = None;
                for name in ["libnvrtc.so", "libnvrtc.so.12", "libnvrtc.so.13"] {
                    match Nvrtc::load_from(name) {
                        Ok(n) => return Ok(n),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| Error::Cuda(NOT_FOUND.into())))
            }
        }
    }

    /// Loads NVRTC from `path` (a file, or a name the loader searches for).
    pub fn load_from(path: &str) -> Result<Nvrtc> {
        // SAFETY: loading a shared library runs its initialisers; NVRTC's have no
        // preconditions.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| Error::Cuda(format!("{NOT_FOUND} ({}: {e})", path.escape_debug())))?;
        let missing = |name: &str, e: libloading::Error| Error::Cuda(format!("{} is not NVRTC: no {name} ({e})", path.escape_debug()));
        macro_rules! sym {
            ($name:literal, $ty:ty) => {
                // SAFETY: the symbol is NVRTC's C entry point of that name, whose signature is
                // `$ty` (nvrtc.h); the pointer stays valid while `lib` lives, and `Nvrtc`
                // keeps `lib` for as long as it keeps the pointer.
                *unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }.map_err(|e| missing($name, e))?
            };
        }
        Ok(Nvrtc {
            version: sym!("nvrtcVersion", VersionFn),
            create: sym!("nvrtcCreateProgram", CreateFn),
            compile: sym!("nvrtcCompileProgram", CompileFn),
            log_size: sym!("nvrtcGetProgramLogSize", SizeFn),
            log: sym!("nvrtcGetProgramLog", BytesFn),
            cubin_size: sym!("nvrtcGetCUBINSize", SizeFn),
            cubin: sym!("nvrtcGetCUBIN", BytesFn),
            destroy: sym!("nvrtcDestroyProgram", DestroyFn),
            error_string: sym!("nvrtcGetErrorString", ErrorStringFn),
            path: path.to_string(),
            _lib: lib,
        })
    }

    /// NVRTC's (major, minor) version.
    pub fn version(&self) -> Result<(i32, i32)> {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: both pointers are valid for one c_int write.
        self.check(unsafe { (self.version)(&mut major, &mut minor) }, "nvrtcVersion")?;
        Ok((major, minor))
    }

    fn check(&self, code: c_int, what: &str) -> Result<()> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr((self.error_string)(code)) }.to_string_lossy().into_owned();
        Err(Error::Cuda(format!("{what} failed: {msg}")))
    }

    /// Compiles `source` (named `name` in messages) with `headers` (include name, source) for
    /// `sm_{arch}` into a CUBIN, with `--ptxas-options=-v` so that the log lists each kernel's
    /// resources. A compile error returns NVRTC's log in the message.
    pub fn compile(&self, name: &str, source: &str, headers: &[(&str, &str)], arch: u32) -> Result<Compiled> {
        let cstr = |s: &str| CString::new(s).map_err(|_| Error::Cuda(format!("{name}: a NUL byte in a source or option")));
        let (src, cname) = (cstr(source)?, cstr(name)?);
        let header_src = headers.iter().map(|(_, s)| cstr(s)).collect::<Result<Vec<_>>>()?;
        let header_names = headers.iter().map(|(n, _)| cstr(n)).collect::<Result<Vec<_>>>()?;
        let (hs, hn): (Vec<*const c_char>, Vec<*const c_char>) = (header_src.iter().map(|s| s.as_ptr()).collect(), header_names.iter().map(|s| s.as_ptr()).collect());
        let options = [format!("--gpu-architecture=sm_{arch}"), "--std=c++17".into(), "--ptxas-options=-v".into()];
        let copts = options.iter().map(|o| cstr(o)).collect::<Result<Vec<_>>>()?;
        let opt_ptrs: Vec<*const c_char> = copts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: every pointer is a NUL-terminated string (or array of them) alive for the call;
        // `prog` receives the new program.
        self.check(unsafe { (self.create)(&mut prog, src.as_ptr(), cname.as_ptr(), hs.len() as c_int, hs.as_ptr(), hn.as_ptr()) }, "nvrtcCreateProgram")?;
        let result = self.compile_program(prog, &opt_ptrs, name);
        // SAFETY: `prog` was created above and is destroyed once.
        unsafe { (self.destroy)(&mut prog) };
        result
    }

    fn compile_program(&self, prog: Program, options: &[*const c_char], name: &str) -> Result<Compiled> {
        // SAFETY: `prog` is a live program; the options are NUL-terminated strings alive for the call.
        let code = unsafe { (self.compile)(prog, options.len() as c_int, options.as_ptr()) };
        let mut size = 0usize;
        // SAFETY: `prog` is live; `size` takes one write.
        self.check(unsafe { (self.log_size)(prog, &mut size) }, "nvrtcGetProgramLogSize")?;
        let mut log = vec![0u8; size.max(1)];
        // SAFETY: the buffer holds the `size` bytes NVRTC said the log takes.
        self.check(unsafe { (self.log)(prog, log.as_mut_ptr().cast()) }, "nvrtcGetProgramLog")?;
        let log = String::from_utf8_lossy(log.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
        if code != 0 {
            return Err(Error::Cuda(format!("NVRTC could not compile {name}: {}", log.trim().replace('\n', " | "))));
        }
        // SAFETY: as above for the CUBIN's size and bytes.
        self.check(unsafe { (self.cubin_size)(prog, &mut size) }, "nvrtcGetCUBINSize")?;
        let mut cubin = vec![0u8; size];
        // SAFETY: the buffer holds the `size` bytes NVRTC said the CUBIN takes.
        self.check(unsafe { (self.cubin)(prog, cubin.as_mut_ptr().cast()) }, "nvrtcGetCUBIN")?;
        Ok(Compiled { cubin, log })
    }

    /// [`Nvrtc::compile`] through the on-disk cache (`KESTREL_CUDA_CACHE`, else
    /// `$XDG_CACHE_HOME/kestrel/cuda` or `~/.cache/kestrel/cuda`): the key is the SHA-256 of the
    /// source, its headers, the architecture and NVRTC's version. A cache that cannot be read
    /// or written is skipped, never an error.
    pub fn compile_cached(&self, name: &str, source: &str, headers: &[(&str, &str)], arch: u32) -> Result<Vec<u8>> {
        let (major, minor) = self.version()?;
        let mut key = format!("{name}\0{source}\0sm_{arch}\0nvrtc {major}.{minor}");
        for (n, s) in headers {
            key.push_str(&format!("\0{n}\0{s}"));
        }
        let path = cache_dir().map(|d| d.join(format!("{}.cubin", crate::cache::sha256_hex(key.as_bytes()))));
        if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(bytes);
        }
        let compiled = self.compile(name, source, headers, arch)?;
        if let Some(p) = &path {
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            if p.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok()) && std::fs::write(&tmp, &compiled.cubin).is_ok() {
                let _ = std::fs::rename(&tmp, p);
            }
        }
        Ok(compiled.cubin)
    }
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("KESTREL_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kestrel").join("cuda"))
}

impl KernelUsage {
    /// Every kernel's resources in a `--ptxas-options=-v` log:
    /// `Compiling entry function 'NAME' for 'sm_80'`, then `N bytes spill stores, M bytes spill
    /// loads` and `Used R registers, S bytes smem, …`.
    pub fn parse(log: &str) -> Vec<KernelUsage> {
        let number_before = |line: &str, unit: &str| -> usize {
            line.split(',').find(|part| part.contains(unit)).and_then(|part| part.split_whitespace().find_map(|w| w.parse().ok())).unwrap_or(0)
        };
        let mut out: Vec<KernelUsage> = Vec::new();
        for line in log.lines() {
            if let Some(rest) = line.split("Compiling entry function '").nth(1) {
                let name = rest.split('\'').next().unwrap_or_default().to_string();
                out.push(KernelUsage { name, registers: 0, spill_stores: 0, spill_loads: 0, smem: 0 });
            } else if let Some(k) = out.last_mut() {
                if line.contains("spill stores") {
                    k.spill_stores = number_before(line, "spill stores");
                    k.spill_loads = number_before(line, "spill loads");
                } else if line.contains("Used") && line.contains("registers") {
                    k.registers = line.split("Used").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
                    k.smem = number_before(line, "bytes smem");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::KernelUsage;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'pool2d_nhwc_f16' for 'sm_80'\nptxas info    : Function properties for pool2d_nhwc_f16\n    0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\nptxas info    : Used 30 registers, 4096 bytes smem, 452 bytes cmem[0]\n";
        let k = KernelUsage::parse(log);
        assert_eq!(k, vec![KernelUsage { name: "pool2d_nhwc_f16".into(), registers: 30, spill_stores: 8, spill_loads: 4, smem: 4096 }]);
    }
}
