//! `paygate send`, `paygate fetch` and `paygate check`: the daemon's delivery code paths, by
//! hand, for admins.

use super::pgp::exit_for;
use super::{Exit, load_config};
use crate::config::Config;
use crate::delivery::{self, FetchOutcome};
use crate::store::Store;
use crate::transport::PutOutcome;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// A sealed file (e.g. from `paygate seal`), sent exactly as it is
    file: PathBuf,
    #[arg(long)]
    bank: String,
    /// Remote file name [default: the file's name]
    #[arg(long = "as", value_name = "NAME")]
    remote_name: Option<String>,
    /// The SHA-256 the file must have (as `paygate seal` printed it): the bytes are checked
    /// as they are sent and the upload is committed only if they match [default: hash the
    /// file first]
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    sha256: Option<String>,
}

fn parse_sha256(s: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("a SHA-256 is 64 hexadecimal digits".into())
    }
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    #[arg(long)]
    bank: String,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Check only this bank
    #[arg(long)]
    bank: Option<String>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn open_store(cfg: &Config) -> Result<Store, Exit> {
    std::fs::create_dir_all(cfg.data_dir()).map_err(|e| {
        eprintln!("paygate: data directory {}: {e}", cfg.data_dir().display());
        Exit::Usage
    })?;
    Store::open_configured(cfg).await.map_err(|e| {
        eprintln!("paygate: {e}");
        Exit::Usage
    })
}

pub fn send(args: SendArgs, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let name = args
        .remote_name
        .clone()
        .or_else(|| {
            args.file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let rt = runtime();
    rt.block_on(async {
        let store = match open_store(&cfg).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let (c, b, f, n) = (cfg.clone(), args.bank.clone(), args.file.clone(), name.clone());
        let sha = args.sha256.clone();
        let result =
            tokio::task::spawn_blocking(move || {
                delivery::send(&c, &b, &f, &n, sha.as_deref(), &|| true)
            })
                .await;
        let result = match result {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        let actor = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "admin".into());
        match result {
            Ok((outcome, sha, _)) => {
                let (word, n) = match outcome {
                    PutOutcome::Uploaded { bytes } => ("uploaded", bytes),
                    PutOutcome::AlreadyThere { bytes } => ("already-there", bytes),
                };
                if let Err(e) = store.record_upload(&args.bank, None, &name, &sha, n, word, &actor, chrono::Utc::now()).await {
                    eprintln!("paygate: the upload succeeded but could not be recorded: {e}");
                    return Exit::Usage;
                }
                match outcome {
                    PutOutcome::Uploaded { bytes } => println!("uploaded {name} to bank {} ({bytes} bytes, SHA-256 {sha})", args.bank),
                    PutOutcome::AlreadyThere { bytes } => println!(
                        "{name} is already on bank {}'s server with the same size ({bytes} bytes): an earlier attempt completed; nothing sent",
                        args.bank
                    ),
                }
                Exit::Ok
            }
            Err(e) => {
                if let Ok((sha, size)) = delivery::sha256_file(&args.file) {
                    let _ = store.record_upload(&args.bank, None, &name, &sha, size, "failed", &actor, chrono::Utc::now()).await;
                }
                eprintln!("paygate: {e}");
                exit_for(&e)
            }
        }
    })
}

pub fn fetch(args: FetchArgs, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let rt = runtime();
    rt.block_on(async {
        let store = match open_store(&cfg).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        match delivery::fetch(&cfg, &store, &args.bank).await {
            Ok(files) if files.is_empty() => {
                println!("no files waiting at bank {}", args.bank);
                Exit::Ok
            }
            Ok(files) => {
                let mut refused = false;
                for f in &files {
                    let what = match &f.outcome {
                        FetchOutcome::Opened {
                            path,
                            signer,
                            reconciled,
                        } => format!(
                            "opened → {} (signed by {}); {}",
                            path.display(),
                            signer
                                .as_deref()
                                .unwrap_or("nobody: unsigned accepted by configuration"),
                            match reconciled {
                                Ok(r) => format!("reconciled: {r}"),
                                Err(e) => format!("NOT RECONCILED: {e}"),
                            }
                        ),
                        FetchOutcome::Quarantined { path, reason } => {
                            refused = true;
                            format!("QUARANTINED → {}: {reason}", path.display())
                        }
                        FetchOutcome::Duplicate => {
                            "seen before (same name and content): skipped".into()
                        }
                        FetchOutcome::Incomplete => {
                            "still being written by the bank: left for the next round".into()
                        }
                    };
                    println!(
                        "{}  {} bytes  sha256 {}…  {what}",
                        f.remote_name,
                        f.size,
                        &f.sha256[..16]
                    );
                }
                if refused { Exit::InputErrors } else { Exit::Ok }
            }
            Err(e) => {
                eprintln!("paygate: {e}");
                exit_for(&e)
            }
        }
    })
}

pub fn check(args: CheckArgs, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    println!("ok    config {}", config_path.display());
    let mut failed = false;
    let mut line = |ok: bool, text: String| {
        failed |= !ok;
        println!("{}  {text}", if ok { "ok  " } else { "FAIL" });
    };
    // The audit trail, when there is a store already.
    if cfg.data_dir().join("paygate.db").exists()
        || cfg.paygate.database.is_some()
        || cfg.store.is_some()
    {
        let verdict = runtime().block_on(async {
            let store = open_store(&cfg)
                .await
                .map_err(|_| "cannot open the store".to_string())?;
            store.verify_audit().await.map_err(|e| e.to_string())
        });
        match verdict {
            Ok(Ok(n)) => line(true, format!("audit trail: {n} entries, chain intact")),
            Ok(Err(broken)) => line(false, format!("audit trail: {broken}")),
            Err(e) => line(false, format!("audit trail: {e}")),
        }
    }
    let banks: Vec<String> = match &args.bank {
        Some(b) if !cfg.banks.contains_key(b) => {
            eprintln!("paygate: no bank `{b}` in the config");
            return Exit::Usage;
        }
        Some(b) => vec![b.clone()],
        None => cfg.banks.keys().cloned().collect(),
    };
    for bank in banks {
        let b = &cfg.banks[&bank];
        if b.pgp.is_some() {
            match delivery::keyring(&cfg, &bank, SystemTime::now()) {
                Ok((kr, warnings)) => {
                    line(
                        true,
                        format!(
                            "bank {bank}: keys load and match their pins (company key {})",
                            kr.company_fingerprint().to_hex()
                        ),
                    );
                    for w in warnings {
                        let days = w
                            .expires
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO)
                            .as_secs()
                            / 86_400;
                        line(
                            false,
                            format!(
                                "bank {bank}: key {} ({}) expires in {days} days: arrange its renewal now",
                                w.fingerprint,
                                w.path.display()
                            ),
                        );
                    }
                }
                Err(e) => line(false, format!("bank {bank}: {e}")),
            }
        } else {
            println!("-     bank {bank}: no OpenPGP configured");
        }
        if b.transport.is_none() {
            println!("-     bank {bank}: no transport configured");
            continue;
        }
        match delivery::connect(&cfg, &bank) {
            Ok(mut link) => {
                let how = match b.transport.as_ref().map(|t| t.kind) {
                    Some(crate::config::TransportKind::Sftp) => {
                        "connected; host key matches its pin; authenticated"
                    }
                    _ => "folder transport reachable",
                };
                line(true, format!("bank {bank}: {how}"));
                for (what, r) in link.check() {
                    match r {
                        Ok(()) => line(true, format!("bank {bank}: {what}")),
                        Err(e) => line(false, format!("bank {bank}: {what}: {e}")),
                    }
                }
            }
            Err(e) => line(false, format!("bank {bank}: {e}")),
        }
    }
    if failed { Exit::InputErrors } else { Exit::Ok }
}
