//! `spyglass info`: prints what the encoder runs on this machine (CPU, instruction-set level,
//! kernels, threads, CUDA), as text or JSON.

use std::io::Write;

use anyhow::Context;

use crate::cli::InfoArgs;
use spyglass::encoder::info::{runtime_info, RuntimeInfo};

use super::Outcome;

pub fn run(args: &InfoArgs) -> anyhow::Result<Outcome> {
    let info = runtime_info()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &info).context("cannot write to stdout")?;
        writeln!(out)?;
    } else {
        out.write_all(render(&info).as_bytes())?;
    }
    Ok(Outcome::Ok)
}

fn render(info: &RuntimeInfo) -> String {
    let names = |levels: &[spyglass::encoder::isa::Isa]| {
        levels
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("spyglass {}\n", info.version);
    text += &format!(
        "cpu:          {}\n",
        info.cpu_model.as_deref().unwrap_or("unknown")
    );
    text += &format!("features:     {}\n", info.cpu_features.join(" "));
    text += &format!("isa detected: {}\n", info.isa.detected);
    text += &format!(
        "isa active:   {}{}\n",
        info.isa.active,
        match &info.isa.override_value {
            Some(value) => format!(" (SPYGLASS_CPU_ISA={value})"),
            None => String::new(),
        }
    );
    text += &format!("isa levels:   {}\n", names(&info.isa.supported));
    text += &format!("threads:      {}\n", info.threads);
    for kernel in &info.kernels {
        text += &format!(
            "{:<5} dense: {}; attention: {}; element-wise: {}; cache key: {}\n",
            kernel.precision,
            kernel.dense,
            kernel.attention,
            kernel.elementwise,
            kernel.compute_path
        );
    }
    text += &format!("cuda:         {}\n", info.cuda.device);
    text
}
