//! What the encoder runs on this machine, for `spyglass info`: the CPU, its instruction-set
//! level and override, the kernels of each precision, threads, and whether CUDA is built in.

use serde::Serialize;

use super::cpu::{Kernels, Precision};
use super::isa::{self, Isa, UnknownIsa};

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeInfo {
    pub version: &'static str,
    pub cpu_model: Option<String>,
    /// The features the kernels use, as `lscpu` names them.
    pub cpu_features: Vec<&'static str>,
    pub isa: IsaInfo,
    /// Threads the CPU kernels run on (`--threads`, `SPYGLASS_THREADS`, else every core).
    pub threads: usize,
    pub kernels: Vec<KernelInfo>,
    pub cuda: CudaInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct IsaInfo {
    /// The highest level this CPU supports.
    pub detected: Isa,
    /// The level in use: `detected`, lowered by `SPYGLASS_CPU_ISA`.
    pub active: Isa,
    /// The value of `SPYGLASS_CPU_ISA`, if set.
    #[serde(rename = "override")]
    pub override_value: Option<String>,
    /// Every level this CPU can run, lowest first.
    pub supported: Vec<Isa>,
}

/// The kernels one precision runs at the active level.
#[derive(Debug, Clone, Serialize)]
pub struct KernelInfo {
    pub precision: &'static str,
    pub dense: String,
    pub attention: &'static str,
    pub elementwise: &'static str,
    /// The identifier embedding caches are keyed by.
    pub compute_path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CudaInfo {
    /// Built with `--features cuda`.
    pub built: bool,
    /// The device the encoder would use, or why there is none.
    pub device: String,
}

/// Describes this machine and build. Fails only when `SPYGLASS_CPU_ISA` names no level.
pub fn runtime_info() -> Result<RuntimeInfo, UnknownIsa> {
    let active = isa::check_override()?;
    let kernels = [Precision::F32, Precision::Int8, Precision::Bf16]
        .into_iter()
        .map(|precision| {
            let kernels = Kernels::new(precision, active);
            KernelInfo {
                precision: precision.as_str(),
                dense: kernels.dense_name(),
                attention: kernels.attention_name(),
                elementwise: elementwise_name(active),
                compute_path: kernels.compute_path(),
            }
        })
        .collect();
    Ok(RuntimeInfo {
        version: env!("CARGO_PKG_VERSION"),
        cpu_model: isa::cpu_model(),
        cpu_features: isa::cpu_features(),
        isa: IsaInfo {
            detected: isa::detected(),
            active,
            override_value: isa::requested(),
            supported: isa::supported_levels(),
        },
        threads: rayon::current_num_threads(),
        kernels,
        cuda: cuda_info(),
    })
}

/// The exponential, GELU and softmax kernels (`kernels.rs`) at `isa`.
fn elementwise_name(isa: Isa) -> &'static str {
    if isa.has_avx512() {
        "avx512"
    } else if isa.has_avx2() {
        "avx2+fma"
    } else {
        "portable"
    }
}

fn cuda_info() -> CudaInfo {
    #[cfg(feature = "cuda")]
    {
        let device = match candle_core::Device::new_cuda(0) {
            Ok(_) => "cuda:0 (the encoder runs there; the CPU kernels above are unused)".into(),
            Err(e) => format!("none ({e}); the encoder runs on the CPU"),
        };
        CudaInfo {
            built: true,
            device,
        }
    }
    #[cfg(not(feature = "cuda"))]
    CudaInfo {
        built: false,
        device: "none (built without `--features cuda`); the encoder runs on the CPU".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_active_level_and_both_precisions() {
        let info = runtime_info().expect("SPYGLASS_CPU_ISA is valid in tests");
        assert!(info.isa.supported.contains(&info.isa.active));
        assert!(info.isa.active <= info.isa.detected);
        let precisions: Vec<_> = info.kernels.iter().map(|k| k.precision).collect();
        assert_eq!(precisions, ["f32", "int8", "bf16"]);
        for kernel in &info.kernels {
            assert!(kernel.compute_path.ends_with(info.isa.active.name()));
        }
        assert!(info.threads >= 1);
    }
}
