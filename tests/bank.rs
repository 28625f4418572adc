//! Every real-world return file in ../shared/iso20022/samples (banks' and other projects'
//! files, many not schema-valid) is read without a panic: understood, or refused with a clear
//! error. `tests/bank/samples.expected.txt` records what paygate reads from each — the statuses
//! at every level, reason codes, entries — and `UPDATE_EXPECT=1` rewrites it for review.

use paygate::bank::{self, Message, reasons::Language};
use std::path::{Path, PathBuf};

fn samples_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PAYGATE_ISO20022_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/iso20022"))
        .join("samples");
    if dir.is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "{} is missing: the real-world bank files were NOT read. Get the shared/iso20022 folder (samples and official schemas) and point PAYGATE_ISO20022_DIR at it.",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!(
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
    );
    None
}

#[test]
fn every_shared_sample_is_understood_or_refused_clearly() {
    let Some(dir) = samples_dir() else { return };
    let mut files: Vec<PathBuf> = ["pain.001", "pain.002", "camt.053", "camt.054"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(dir.join(d))
                .unwrap()
                .flatten()
                .map(|e| e.path())
        })
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 90,
        "expected about 100 samples, found {}",
        files.len()
    );
    let mut out = String::new();
    let (mut understood, mut refused) = (0, 0);
    for f in &files {
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        let bytes = std::fs::read(f).unwrap();
        out.push_str(&format!("=== {rel}\n"));
        match bank::parse(&bytes) {
            Ok(m) => {
                understood += 1;
                out.push_str(&bank::describe::describe(&m, Language::En));
                if rel.starts_with("pain.002") {
                    let Message::StatusReport(r) = &m else {
                        panic!("{rel}: not read as a status report")
                    };
                    let any = r.group_status.is_some()
                        || r.payment_infos.iter().any(|p| {
                            p.status.is_some() || p.transactions.iter().any(|t| t.status.is_some())
                        });
                    assert!(any, "{rel}: no status found at any level");
                }
            }
            Err(e) => {
                refused += 1;
                out.push_str(&format!("refused: {e}\n"));
                if !rel.starts_with("pain.001") {
                    assert!(
                        rel.contains("NEGATIVE"),
                        "{rel}: a real return file was refused: {e}"
                    );
                }
            }
        }
    }
    // The deliberately wrong namespace is refused as an unknown message; every pain.001 (not a
    // return file) is refused with the reason.
    assert!(out.contains("=== pain.002/NEGATIVE_pain.002-like_namespace-other.002.001.03.xml\nrefused: unknown message"), "{out}");
    assert!(
        understood >= 60 && refused >= 20,
        "understood {understood}, refused {refused}"
    );
    let expected_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bank/samples.expected.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expected_path, &out).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
    if out != want {
        let first = out
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "what paygate reads from the samples changed (UPDATE_EXPECT=1 cargo test --test bank, then review the diff); first difference at line {}:\n got: {}\nwant: {}",
            first + 1,
            out.lines().nth(first).unwrap_or(""),
            want.lines().nth(first).unwrap_or("")
        );
    }
}

/// In JSON (`paygate inspect --json`) every status is the ISO code the file carries, spelled as
/// the standard spells it (`ACTC`, not `Actc`), so that a consumer can match on it.
#[test]
fn json_carries_the_iso_codes_of_the_file() {
    let Some(dir) = samples_dir() else { return };
    let mut checked = 0;
    for d in ["pain.002", "camt.053", "camt.054"] {
        for e in std::fs::read_dir(dir.join(d)).unwrap().flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let Ok(m) = bank::parse(&bytes) else { continue };
            let text = String::from_utf8_lossy(&bytes);
            let json = serde_json::to_value(&m).unwrap();
            let mut codes = Vec::new();
            collect(&json, &mut codes);
            for (key, code) in codes {
                checked += 1;
                let in_file = match key.as_str() {
                    "direction" => {
                        text.contains(&format!(">{code}<")) || text.contains(&format!("\"{code}\""))
                    }
                    _ => text.contains(&format!(">{code}<")),
                };
                assert!(
                    in_file,
                    "{}: `{key}` is {code:?} in JSON, which the file does not say",
                    e.path().display()
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} codes checked");
}

/// Every `status`/`group_status`/`direction`-like string value in a JSON tree, with its key.
fn collect(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if let serde_json::Value::String(s) = x
                    && (k == "direction" || (k.ends_with("status") && k != "entry_status"))
                    && s.len() == 4
                {
                    out.push((k.clone(), s.clone()));
                }
                collect(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}
