//! `spyglass info`: the machine report, its JSON form, and the `SPYGLASS_CPU_ISA` override.

mod common;

use std::process::Command;

fn info(isa: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spyglass"));
    command
        .arg("info")
        .args(args)
        .env_remove("SPYGLASS_CPU_ISA");
    if let Some(isa) = isa {
        command.env("SPYGLASS_CPU_ISA", isa);
    }
    command.output().expect("spyglass runs")
}

#[test]
fn info_reports_the_isa_and_the_kernels_of_each_precision() {
    let run = info(None, &["--json"]);
    common::ok(&run);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("stdout is JSON");
    let detected = report["isa"]["detected"].as_str().unwrap();
    assert_eq!(report["isa"]["active"], detected);
    assert!(report["isa"]["override"].is_null());
    let supported: Vec<&str> = report["isa"]["supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(supported[0], "portable");
    assert_eq!(*supported.last().unwrap(), detected);
    let kernels = report["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), 3);
    assert_eq!(kernels[0]["precision"], "f32");
    assert_eq!(kernels[1]["precision"], "int8");
    assert_eq!(kernels[2]["precision"], "bf16");
    assert_eq!(kernels[1]["compute_path"], format!("int8-{detected}"));

    let text = info(None, &[]);
    let stderr = common::ok(&text);
    assert!(
        stderr.is_empty(),
        "the report goes to stdout, not stderr: {stderr}"
    );
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains(&format!("isa active:   {detected}")),
        "{text}"
    );
    assert!(text.contains("int8  dense:"), "{text}");
}

#[test]
fn the_override_lowers_the_level_and_a_bad_value_is_an_error() {
    let run = info(Some("portable"), &["--json"]);
    common::ok(&run);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["isa"]["active"], "portable");
    assert_eq!(report["isa"]["override"], "portable");
    assert_eq!(report["kernels"][0]["dense"], "gemm crate");
    assert_eq!(report["kernels"][1]["dense"], "portable");
    assert_eq!(
        report["kernels"][2]["dense"],
        "unavailable (needs AVX-512 BF16)"
    );

    // A level above the CPU's is clamped to what it has, never refused.
    let run = info(Some("amx"), &["--json"]);
    common::ok(&run);
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["isa"]["active"], report["isa"]["detected"]);

    let run = info(Some("avx1024"), &[]);
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("`SPYGLASS_CPU_ISA=avx1024`"), "{stderr}");
    assert!(stderr.contains("avx512-vnni"), "{stderr}");
}

#[test]
fn bf16_below_avx512_bf16_is_refused_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":\"a\",\"text\":\"Hackers stole files.\"}\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_spyglass"))
        .args(["embed", "--input", input.to_str().unwrap(), "--output", "-"])
        .args(["--encoder", common::model_dir(), "--precision", "bf16"])
        .env("SPYGLASS_CPU_ISA", "avx2")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("`--precision bf16` needs AVX-512 BF16"),
        "{stderr}"
    );
    // It says why: the override lowered the level, or the CPU has no AVX-512 BF16.
    let has_bf16 = std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.split_whitespace().any(|flag| flag == "avx512_bf16"))
        .unwrap_or(false);
    let why = if has_bf16 {
        "unset it"
    } else {
        "this CPU has none"
    };
    assert!(stderr.contains(why), "{stderr}");
    assert!(
        !stderr.contains("incomplete"),
        "not a damaged-files error: {stderr}"
    );
    assert!(run.stdout.is_empty());
}
