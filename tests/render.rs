//! Rendering golden tests: every folder in tests/render/ is a case run through the real
//! `paygate convert` with a fixed MsgId, creation time and date. `expected.out` holds the bank
//! file byte for byte (absent when nothing may be written), `expected.txt` the exit code and
//! what the user was told. Every generated XML document is validated against the official
//! ISO 20022 schema with ../shared/iso20022/xsd-check. `UPDATE_EXPECT=1` rewrites expectations.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    channel: String,
    format: String,
    input: Option<PathBuf>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared ISO 20022 folder (schemas, xsd-check, samples): `$PAYGATE_ISO20022_DIR`, else
/// `../shared/iso20022` beside the crate. Missing: a failure under CI, a loud notice elsewhere.
fn iso20022_dir(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("PAYGATE_ISO20022_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/iso20022"));
    if dir.join("xsd-check").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "{} has no xsd-check: {what} NOT checked against the official ISO 20022 schemas. \
         Get the schemas (iso20022.org message catalogue) and the shared/iso20022 folder, and \
         point PAYGATE_ISO20022_DIR at it.",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

fn run_case(dir: &Path, out: &Path) -> (String, Option<Vec<u8>>) {
    let case: Case =
        toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap()).unwrap();
    let input = match &case.input {
        Some(p) => dir.join(p),
        None => dir.join("input.csv"),
    };
    let _ = std::fs::remove_file(out);
    let o = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .current_dir(root())
        .env("RUST_BACKTRACE", "0")
        .args(["--config", "tests/render/config.toml", "convert"])
        .arg(&input)
        .args(["--channel", &case.channel, "--format", &case.format])
        .args([
            "--msg-id",
            "MSG-20261130-0001",
            "--created",
            "2026-11-30T09:30:00+08:00",
            "--as-of",
            "2026-11-30",
        ])
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let told = format!(
        "exit: {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
    .replace(&input.display().to_string(), "INPUT")
    .replace(&out.display().to_string(), "OUT")
    .replace(&root().display().to_string(), "ROOT");
    (told, std::fs::read(out).ok())
}

#[test]
fn rendering_golden_cases() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/render"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "found only {} cases", dirs.len());
    let iso = iso20022_dir("generated pain.001 files");
    let mut failures = Vec::new();
    let mut validated = 0;
    for dir in &dirs {
        let out = tmp.path().join(dir.file_name().unwrap());
        let (told, written) = run_case(dir, &out);
        // Same input, same bytes: a second run must give an identical file.
        let (_, again) = run_case(dir, &out);
        if written != again {
            failures.push(format!("{}: two runs wrote different bytes", dir.display()));
        }
        let exp_txt = dir.join("expected.txt");
        let exp_out = dir.join("expected.out");
        if update {
            std::fs::write(&exp_txt, &told).unwrap();
            match &written {
                Some(b) => std::fs::write(&exp_out, b).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&exp_out);
                }
            }
        } else {
            let want = std::fs::read_to_string(&exp_txt).unwrap_or_default();
            if told != want {
                failures.push(format!(
                    "{}: output differs\n--- expected\n{want}--- got\n{told}",
                    dir.display()
                ));
            }
            if written != std::fs::read(&exp_out).ok() {
                failures.push(format!(
                    "{}: bank file differs from expected.out (or one of them is missing)",
                    dir.display()
                ));
            }
        }
        if let (Some(bytes), Some(iso)) = (&written, &iso)
            && bytes.starts_with(b"<?xml")
        {
            let check = Command::new(iso.join("xsd-check"))
                .arg(&out)
                .output()
                .unwrap();
            if check.status.code() != Some(0) {
                failures.push(format!(
                    "{}: INVALID against the official schema:\n{}{}",
                    dir.display(),
                    String::from_utf8_lossy(&check.stdout),
                    String::from_utf8_lossy(&check.stderr)
                ));
            }
            validated += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if iso.is_some() {
        assert!(
            validated >= 9,
            "only {validated} XML documents were schema-checked"
        );
    }
}
