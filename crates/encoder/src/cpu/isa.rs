//! The CPU's instruction-set level, decided once per process: which matrix and element-wise
//! kernels the CPU forward pass runs, and the `SPYGLASS_CPU_ISA` override that lowers it.

use std::fmt;
use std::sync::OnceLock;

/// Instruction-set levels the CPU kernels are written for, lowest first. Each level needs the
/// features of the levels below it that it builds on (see [`Isa::supported`]); a CPU can have a
/// higher level without a lower one (AMD Zen 4 has AVX-512 VNNI but not AVX-VNNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the build's baseline; any CPU.
    Portable,
    /// AVX2 and FMA (Intel Haswell, AMD Zen and later).
    Avx2,
    /// AVX2 with the 256-bit VNNI dot products (Intel Alder Lake, AMD Zen 5).
    AvxVnni,
    /// AVX-512 F, BW, VL and DQ (Intel Skylake-SP, AMD Zen 4 and later).
    Avx512,
    /// AVX-512 with VNNI (Intel Cascade Lake, AMD Zen 4 and later).
    Avx512Vnni,
    /// AVX-512 VNNI plus AMX tiles that the kernel lets this process use (Intel Sapphire Rapids
    /// and later).
    Amx,
}

/// Every level, lowest first.
pub const ALL: [Isa; 6] = [
    Isa::Portable,
    Isa::Avx2,
    Isa::AvxVnni,
    Isa::Avx512,
    Isa::Avx512Vnni,
    Isa::Amx,
];

/// The environment variable that lowers the level the kernels use.
pub const OVERRIDE_VAR: &str = "SPYGLASS_CPU_ISA";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("`{OVERRIDE_VAR}={value}` is not an instruction-set level; use one of portable, avx2, avx-vnni, avx512, avx512-vnni, amx (or unset it)")]
pub struct UnknownIsa {
    pub value: String,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avx-vnni",
            Self::Avx512 => "avx512",
            Self::Avx512Vnni => "avx512-vnni",
            Self::Amx => "amx",
        }
    }

    pub fn parse(value: &str) -> Result<Self, UnknownIsa> {
        let wanted = value.trim().to_ascii_lowercase().replace('_', "-");
        ALL.into_iter()
            .find(|isa| isa.name() == wanted)
            .ok_or_else(|| UnknownIsa {
                value: value.to_string(),
            })
    }

    /// Whether this CPU (and, for AMX, the operating system) can run the level's kernels.
    pub fn supported(self) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => features().avx2_fma,
            Self::AvxVnni => features().avx2_fma && features().avx_vnni,
            Self::Avx512 => features().avx2_fma && features().avx512,
            Self::Avx512Vnni => Self::Avx512.supported() && features().avx512_vnni,
            Self::Amx => Self::Avx512Vnni.supported() && features().amx,
        }
    }

    /// The highest supported level at or below `self`: what a request for `self` gets.
    pub fn clamped(self) -> Self {
        ALL.into_iter()
            .rev()
            .find(|isa| *isa <= self && isa.supported())
            .unwrap_or(Self::Portable)
    }

    /// Whether the level has 512-bit registers.
    pub fn has_avx512(self) -> bool {
        self >= Self::Avx512
    }

    /// Whether the level has AVX2 and FMA (every level but portable).
    pub fn has_avx2(self) -> bool {
        self >= Self::Avx2
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the CPU offers, read once.
#[derive(Debug, Clone, Copy, Default)]
struct Features {
    avx2_fma: bool,
    avx_vnni: bool,
    avx512: bool,
    avx512_vnni: bool,
    avx512_bf16: bool,
    /// AMX-TILE and AMX-INT8 in CPUID, and the kernel granted this process the tile state.
    amx: bool,
    /// `amx` and AMX-BF16 (CPUID.7.0:EDX[22]).
    amx_bf16: bool,
}

fn features() -> Features {
    static FEATURES: OnceLock<Features> = OnceLock::new();
    *FEATURES.get_or_init(detect_features)
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> Features {
    use std::is_x86_feature_detected as has;
    let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq");
    // The tile state is asked for once, here.
    let amx = amx_cpuid() && amx_permission();
    Features {
        avx2_fma: has!("avx2") && has!("fma"),
        avx_vnni: has!("avxvnni"),
        avx512,
        avx512_vnni: avx512 && has!("avx512vnni"),
        avx512_bf16: avx512 && has!("avx512bf16"),
        amx,
        amx_bf16: amx && cpuid_7_edx() & (1 << 22) != 0,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_features() -> Features {
    Features::default()
}

/// AMX-TILE (CPUID.7.0:EDX[24]) and AMX-INT8 (EDX[25]); std's detection of them is unstable.
#[cfg(target_arch = "x86_64")]
fn amx_cpuid() -> bool {
    let edx = cpuid_7_edx();
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// CPUID leaf 7, subleaf 0, EDX (0 where the CPU has no leaf 7).
#[cfg(target_arch = "x86_64")]
fn cpuid_7_edx() -> u32 {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU; leaf 7 is checked against the highest leaf.
    unsafe {
        if std::arch::x86_64::__cpuid(0).eax >= 7 {
            std::arch::x86_64::__cpuid_count(7, 0).edx
        } else {
            0
        }
    }
}

/// Linux hands a process the (8 KiB) tile-data state only on request: ask once. A refusal
/// (an older kernel, a sandbox) means the AMX level is unsupported, not an error.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_permission() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these codes only reads or sets this process's permission bits.
    unsafe {
        if libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) != 0
        {
            return false;
        }
        let mut granted: u64 = 0;
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut granted as *mut u64,
        ) == 0
            && granted & (1 << XFEATURE_XTILEDATA) != 0
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn amx_permission() -> bool {
    false
}

/// Whether the CPU has AVX-512 BF16 (`vdpbf16ps`), which the bf16 precision needs on top of the
/// AVX-512 level.
pub fn has_avx512_bf16() -> bool {
    features().avx512_bf16
}

/// Whether the AMX tiles (granted to this process) also multiply bf16 (`tdpbf16ps`).
pub fn has_amx_bf16() -> bool {
    features().amx_bf16
}

/// The highest level this CPU supports.
pub fn detected() -> Isa {
    Isa::Amx.clamped()
}

/// The level the kernels use: the detected one, lowered by `SPYGLASS_CPU_ISA` when set (a
/// request above what the CPU has is clamped to it). Read once per process.
pub fn active() -> Isa {
    match selection() {
        Ok(isa) => *isa,
        // `check_override` reports the bad value where an error can be shown; the kernels
        // stay correct on the detected level meanwhile.
        Err(_) => detected(),
    }
}

/// Fails when `SPYGLASS_CPU_ISA` names no level, so that a mistyped override is an error
/// rather than silently ignored (encoder loading calls it).
pub fn check_override() -> Result<Isa, UnknownIsa> {
    selection().clone()
}

/// What `SPYGLASS_CPU_ISA` asked for, if set.
pub fn requested() -> Option<String> {
    std::env::var(OVERRIDE_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn selection() -> &'static Result<Isa, UnknownIsa> {
    static SELECTION: OnceLock<Result<Isa, UnknownIsa>> = OnceLock::new();
    SELECTION.get_or_init(|| match requested() {
        Some(value) => Isa::parse(&value).map(Isa::clamped),
        None => Ok(detected()),
    })
}

/// The CPU's brand string from CPUID (e.g. `AMD EPYC 9R14 96-Core Processor`), if it has one.
pub fn cpu_model() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86_64 CPU; the brand leaves are checked against the
        // highest extended leaf first.
        let bytes = unsafe {
            if __cpuid(0x8000_0000).eax < 0x8000_0004 {
                return None;
            }
            let mut bytes = Vec::with_capacity(48);
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                let r = __cpuid(leaf);
                for word in [r.eax, r.ebx, r.ecx, r.edx] {
                    bytes.extend_from_slice(&word.to_le_bytes());
                }
            }
            bytes
        };
        let text = String::from_utf8_lossy(&bytes);
        let model = text.trim_matches(char::from(0)).trim();
        (!model.is_empty()).then(|| model.split_whitespace().collect::<Vec<_>>().join(" "))
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The CPU features the kernels care about that this CPU has, by their `lscpu` names.
pub fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let mut out = Vec::new();
        let known = [
            ("avx2", has!("avx2")),
            ("fma", has!("fma")),
            ("avx_vnni", has!("avxvnni")),
            ("avx512f", has!("avx512f")),
            ("avx512bw", has!("avx512bw")),
            ("avx512vl", has!("avx512vl")),
            ("avx512dq", has!("avx512dq")),
            ("avx512_vnni", has!("avx512vnni")),
            ("avx512_bf16", has!("avx512bf16")),
            ("amx_tile", amx_cpuid()),
        ];
        for (name, present) in known {
            if present {
                out.push(name);
            }
        }
        if amx_cpuid() && !features().amx {
            out.push("(amx tile state refused by the kernel)");
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

/// The levels this CPU supports, lowest first: the kernel tests run each one.
pub fn supported_levels() -> Vec<Isa> {
    ALL.into_iter().filter(|isa| isa.supported()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_are_refused() {
        for isa in ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
        }
        assert_eq!(Isa::parse(" AVX512_VNNI "), Ok(Isa::Avx512Vnni));
        let err = Isa::parse("avx1024").unwrap_err();
        assert!(err.to_string().contains("`SPYGLASS_CPU_ISA=avx1024`"));
    }

    #[test]
    fn clamping_never_rises_and_lands_on_a_supported_level() {
        for isa in ALL {
            let got = isa.clamped();
            assert!(got <= isa && got.supported(), "{isa} -> {got}");
        }
        assert_eq!(Isa::Portable.clamped(), Isa::Portable);
        assert!(detected().supported());
        assert!(supported_levels().contains(&detected()));
        assert_eq!(supported_levels()[0], Isa::Portable);
    }
}
