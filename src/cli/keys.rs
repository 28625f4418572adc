//! `paygate keys generate|show`: the company's OpenPGP key.

use super::Exit;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Generate the company key pair (Ed25519 signing, Cv25519 encryption)
    Generate {
        /// User id, e.g. "Acme Treasury <treasury@acme.example>"
        #[arg(long)]
        userid: String,
        /// Folder for the key files
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// File name stem: NAME.sec.asc (mode 0600) and NAME.pub.asc
        #[arg(long, default_value = "company")]
        name: String,
        /// Validity in years
        #[arg(long, default_value_t = 2)]
        years: u32,
    },
    /// Show a key file: fingerprint, user ids, validity, subkeys
    Show { file: PathBuf },
    /// Re-encrypt the payment data in the store under a new data key (stop the daemon first;
    /// resumable: run it again after an interruption; audited)
    RotateDataKey {
        /// Rows re-encrypted per transaction
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
    },
}

pub fn run(cmd: Command, config_path: &std::path::Path) -> Exit {
    match cmd {
        Command::Generate {
            userid,
            dir,
            name,
            years,
        } => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("paygate: {}: {e}", dir.display());
                return Exit::Usage;
            }
            match crate::seal::generate(&userid, &dir, &name, years) {
                Ok((fp, sec, public)) => {
                    println!("fingerprint {}", fp.to_hex());
                    println!(
                        "secret key  {} (mode 0600: keep it on this machine only)",
                        sec.display()
                    );
                    println!(
                        "public key  {} (give this file to the bank)",
                        public.display()
                    );
                    println!(
                        "\nGive the bank the public key and read the fingerprint to them over a second channel."
                    );
                    println!(
                        "Config:\n  [company.pgp]\n  secret_key = \"{}\"\n  fingerprint = \"{}\"",
                        sec.display(),
                        fp.to_hex()
                    );
                    Exit::Ok
                }
                Err(e) => {
                    eprintln!("paygate: {e}");
                    Exit::Usage
                }
            }
        }
        Command::RotateDataKey { chunk } => rotate_data_key(config_path, chunk.max(1)),
        Command::Show { file } => match crate::seal::describe(&file) {
            Ok(s) => {
                print!("{s}");
                Exit::Ok
            }
            Err(e) => {
                eprintln!("paygate: {e}");
                Exit::Usage
            }
        },
    }
}

/// A new data key becomes current (written to the key file beside the old one before any row
/// changes), every row is re-encrypted under it a thousand at a time, and only when none is
/// left under an old key are the old keys removed from the file. Killed anywhere, every row
/// stays readable, and running it again continues.
fn rotate_data_key(config_path: &std::path::Path, chunk: usize) -> Exit {
    let cfg = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if std::os::unix::net::UnixStream::connect(cfg.control_socket()).is_ok() {
        eprintln!(
            "paygate: the daemon is running ({}): stop it first (systemctl stop paygate); it holds the data key in memory",
            cfg.control_socket().display()
        );
        return Exit::Usage;
    }
    // Held to the end: a daemon starting meanwhile waits for nothing and refuses to run.
    let data = cfg.data_dir();
    if let Err(e) = crate::durable::create_private_dir(&data) {
        eprintln!("paygate: {}: {e}", data.display());
        return Exit::Usage;
    }
    let _lock = match crate::durable::lock_dir(&data) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("paygate: {e}: stop the daemon first (systemctl stop paygate)");
            return Exit::Usage;
        }
    };
    let me = crate::daemon::folders::current_user();
    let rt = super::current_thread_runtime();
    let fail = super::usage_error;
    rt.block_on(async {
        // Opening creates the key file when there is none yet.
        let store = match crate::store::Store::open_configured(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let path = cfg.data_key_path();
        let mut keys = match crate::vault::DataKeys::load(&path) {
            Ok(k) => k,
            Err(e) => return fail(&e),
        };
        let now = chrono::Utc::now();
        let (action, details) = if keys.held().len() == 1 {
            let old = keys.current();
            let new = keys.add_key();
            if let Err(e) = keys.save(&path) {
                return fail(&e);
            }
            (
                "data_key.rotation_started",
                format!("data key {old} -> {new}; key file {}", path.display()),
            )
        } else {
            (
                "data_key.rotation_resumed",
                format!(
                    "keys held {:?}, current {}; key file {}",
                    keys.held(),
                    keys.current(),
                    path.display()
                ),
            )
        };
        if let Err(e) = store.audit_at_rest(&me, action, &details, now).await {
            return fail(&e);
        }
        println!("{action}: {details}");
        store.close().await;
        let store = match crate::store::Store::open_configured(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let todo = match store.rows_off_current_key().await {
            Ok(n) => n,
            Err(e) => return fail(&e),
        };
        println!("{todo} payment rows to re-encrypt");
        let done = match store
            .reencrypt(chunk, |n| {
                if n % 10_000 < chunk as u64 {
                    println!("  {n} of {todo}");
                }
            })
            .await
        {
            Ok(d) => d,
            Err(e) => return fail(&e),
        };
        match store.rows_off_current_key().await {
            Ok(0) => {}
            Ok(n) => {
                return fail(&format!(
                    "{n} rows are still under an old key; run the rotation again"
                ));
            }
            Err(e) => return fail(&e),
        }
        let retired = keys.retire_old_keys();
        if let Err(e) = keys.save(&path) {
            return fail(&e);
        }
        let details = format!(
            "{} payment rows re-encrypted under data key {}; keys {retired:?} removed from {}",
            done.rows,
            keys.current(),
            path.display()
        );
        if let Err(e) = store
            .audit_at_rest(&me, "data_key.rotated", &details, chrono::Utc::now())
            .await
        {
            return fail(&e);
        }
        println!("data_key.rotated: {details}");
        println!(
            "Back up {} now: the old key no longer opens anything.",
            path.display()
        );
        Exit::Ok
    })
}
