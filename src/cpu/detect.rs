//! Run-time ISA selection. The CPU is probed once; `KESTREL_ISA=scalar|avx2|avx512vnni` forces
//! a path (an unsupported forced path is an error, never a silent fallback). Kernels that need
//! an ISA take a token that can only be built when the CPU has it.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// An instruction-set path for the integer kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512Vnni,
}

impl Isa {
    /// The name `KESTREL_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512vnni",
        }
    }

    /// Parses a `KESTREL_ISA` value.
    pub fn parse(s: &str) -> Result<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "avx512vnni" | "avx512" | "vnni" => Ok(Isa::Avx512Vnni),
            other => Err(Error::Argument(format!("KESTREL_ISA={other}: use scalar, avx2 or avx512vnni"))),
        }
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => Avx2::new().is_some(),
            Isa::Avx512Vnni => Avx512Vnni::new().is_some(),
        }
    }
}

/// The error for a path this CPU lacks.
pub fn unsupported(isa: Isa) -> Error {
    Error::Unsupported { what: format!("the {} kernels", isa.name()), hint: format!("this CPU lacks {}; it supports {}", isa.name(), supported().iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")) }
}

/// Every path this CPU supports, scalar first.
pub fn supported() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni].into_iter().filter(|i| i.supported()).collect()
}

/// The richest supported path.
pub fn best() -> Isa {
    supported().into_iter().max().unwrap_or(Isa::Scalar)
}

static SELECTED: OnceLock<std::result::Result<Isa, String>> = OnceLock::new();

/// The path in use: `KESTREL_ISA` if set (and supported), else [`best`].
pub fn selected() -> Result<Isa> {
    SELECTED
        .get_or_init(|| match std::env::var("KESTREL_ISA") {
            Ok(v) if !v.is_empty() => {
                let isa = Isa::parse(&v).map_err(|e| e.to_string())?;
                if isa.supported() {
                    Ok(isa)
                } else {
                    Err(format!("KESTREL_ISA={v}: this CPU does not support {}", isa.name()))
                }
            }
            _ => Ok(best()),
        })
        .clone()
        .map_err(Error::Argument)
}

/// A CPU family whose measured plan rules differ from the default ones: where two ways of
/// running a layer are both bit-identical to their twins, which is faster can depend on the
/// micro-architecture, not only on the ISA (see [`crate::exec::prepare::bf16_direct`] and
/// [`crate::cpu::wino::pays_bf16`] for the rules that differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tune {
    /// The rules as measured on Zen 5 (and, before [`Tune::Intel`] was told apart, on the
    /// Intel hosts, whose rules they still are but one).
    Generic,
    /// AMD Zen 4 (family 19h with AVX-512), whose 512-bit operations run as two 256-bit halves.
    Zen4,
    /// Intel with AVX-512 (CPUID "GenuineIntel"): [`Tune::Generic`]'s rules, but 1×1 convs
    /// pack their B blocks on maps of at most 14² and read them in place on larger ones
    /// (`cpu::sconv`, measured on family 6 model 207).
    Intel,
}

impl Tune {
    /// The name `KESTREL_TUNE` takes.
    pub fn name(self) -> &'static str {
        match self {
            Tune::Generic => "generic",
            Tune::Zen4 => "zen4",
            Tune::Intel => "intel",
        }
    }

    /// Parses a `KESTREL_TUNE` value.
    pub fn parse(s: &str) -> Result<Tune> {
        match s.trim().to_ascii_lowercase().as_str() {
            "generic" => Ok(Tune::Generic),
            "zen4" => Ok(Tune::Zen4),
            "intel" => Ok(Tune::Intel),
            other => Err(Error::Argument(format!("KESTREL_TUNE={other}: use generic, zen4 or intel"))),
        }
    }

    /// This CPU's family by CPUID: AMD family 19h with AVX-512F is Zen 4 (Zen 3, also family
    /// 19h, has no AVX-512), Intel with AVX-512F is [`Tune::Intel`]; everything else is
    /// [`Tune::Generic`].
    pub fn of_cpu() -> Tune {
        #[cfg(target_arch = "x86_64")]
        {
            let l1 = cpuid(1, 0);
            let base = (l1.eax >> 8) & 0xf;
            let family = if base == 0xf { base + ((l1.eax >> 20) & 0xff) } else { base };
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            if vendor_is(b"AuthenticAMD") && family == 0x19 && avx512 {
                return Tune::Zen4;
            }
            if is_intel() && avx512 {
                return Tune::Intel;
            }
        }
        Tune::Generic
    }
}

/// CPUID leaf `leaf`, sub-leaf `sub`. Every x86-64 CPU has the instruction; Rust made the
/// intrinsic safe in a release after the crate's `rust-version` (1.89), where it is still
/// `unsafe`, hence the block that newer compilers call unused.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
pub(crate) fn cpuid(leaf: u32, sub: u32) -> std::arch::x86_64::CpuidResult {
    // SAFETY: CPUID is part of the x86-64 baseline and touches no memory.
    unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) }
}

/// Whether CPUID names this CPU's vendor "GenuineIntel".
pub fn is_intel() -> bool {
    vendor_is(b"GenuineIntel")
}

/// Whether CPUID leaf 0 names this CPU's vendor `name` (its 12 bytes in EBX, EDX, ECX).
fn vendor_is(name: &[u8; 12]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let l0 = cpuid(0, 0);
        let mut v = [0u8; 12];
        for (chunk, reg) in v.chunks_exact_mut(4).zip([l0.ebx, l0.edx, l0.ecx]) {
            chunk.copy_from_slice(&reg.to_le_bytes());
        }
        &v == name
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        false
    }
}

static TUNE: OnceLock<std::result::Result<Tune, String>> = OnceLock::new();

/// The family the plan's rules follow: `KESTREL_TUNE` if set, else [`Tune::of_cpu`]. It
/// chooses between ways of running a layer that are each bit-identical to their own twin;
/// the ways round differently (a stem's sums in another order, Winograd or direct), so the
/// outputs of two families' plans agree within bf16's tolerance, not bit for bit.
pub fn tune() -> Result<Tune> {
    TUNE.get_or_init(|| match std::env::var("KESTREL_TUNE") {
        Ok(v) if !v.is_empty() => Tune::parse(&v).map_err(|e| e.to_string()),
        _ => Ok(Tune::of_cpu()),
    })
    .clone()
    .map_err(Error::Argument)
}

/// Proof that the CPU has AVX2 (and FMA).
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// `Some` only on CPUs with AVX2.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Avx2(()));
        }
        None
    }
}

/// Proof that the CPU has AVX-512 F/BW and VNNI.
#[derive(Clone, Copy, Debug)]
pub struct Avx512Vnni(());

impl Avx512Vnni {
    /// `Some` only on CPUs with AVX-512F, AVX-512BW and AVX-512 VNNI.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Some(Avx512Vnni(()));
        }
        None
    }
}

/// The AMX tile multiplies kestrel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmxKind {
    /// `tdpbf16ps` (AMX-BF16): the bf16 convs.
    Bf16,
    /// `tdpbsud` (AMX-INT8): the INT8 GEMM.
    Int8,
}

/// Whether AMX tiles of `kind` can run here: CPUID says AMX-TILE and the kind, Linux grants
/// this process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, asked once), and
/// `KESTREL_AMX=0` does not turn AMX off. Callers also need the AVX-512 token of the path
/// the tiles extend.
pub fn amx(kind: AmxKind) -> bool {
    if std::env::var("KESTREL_AMX").is_ok_and(|v| v.trim() == "0") {
        return false;
    }
    static GRANTED: OnceLock<bool> = OnceLock::new();
    amx_cpuid(kind) && *GRANTED.get_or_init(request_tile_data)
}

#[cfg(target_arch = "x86_64")]
fn amx_cpuid(kind: AmxKind) -> bool {
    if cpuid(0, 0).eax < 7 {
        return false; // no leaf 7: no AMX (a higher leaf would read another leaf's bits)
    }
    let edx = cpuid(7, 0).edx;
    let bit = match kind {
        AmxKind::Bf16 => 22,
        AmxKind::Int8 => 25,
    };
    edx & (1 << 24) != 0 && edx & (1 << bit) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn amx_cpuid(_: AmxKind) -> bool {
    false
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these codes only reads its integer argument or writes one u64
    // through the pointer, which points at a live local.
    unsafe {
        if libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0 {
            return false;
        }
        let mut granted: u64 = 0;
        libc::syscall(libc::SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &mut granted as *mut u64) == 0 && granted & (1 << XFEATURE_XTILEDATA) != 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_data() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendor string read from CPUID's registers: at most one of the two vendors, and the
    /// tuning family follows it (printed, so a log says which this host is).
    #[test]
    fn the_vendor_decides_the_tuning_family() {
        let (intel, amd) = (is_intel(), vendor_is(b"AuthenticAMD"));
        println!("GenuineIntel {intel}, AuthenticAMD {amd}, tune {:?}", Tune::of_cpu());
        assert!(!(intel && amd));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Tune::of_cpu() == Tune::Intel, intel && std::arch::is_x86_feature_detected!("avx512f"));
        if Tune::of_cpu() == Tune::Zen4 {
            assert!(amd);
        }
    }
}
