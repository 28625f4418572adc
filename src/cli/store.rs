//! `paygate store`: the store itself (moving it from SQLite to PostgreSQL).

use super::Exit;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Copy this SQLite store into an empty PostgreSQL database and verify it there (batches,
    /// payments, history, users, the audit chain with its hashes); the SQLite file is only read
    MigrateTo {
        /// postgres://USER@HOST:PORT/DB[?sslmode=verify-full&sslrootcert=CA.pem]
        url: String,
        /// A file holding the database password (mode 0600)
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
}

pub fn run(c: Command, config_path: &Path) -> Exit {
    match c {
        Command::MigrateTo { url, password_file } => {
            migrate_to(config_path, &url, password_file.as_deref())
        }
    }
}

fn migrate_to(config_path: &Path, url: &str, password_file: Option<&Path>) -> Exit {
    use crate::store::{Backend, Store, redact_url};
    let cfg = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let fail = super::usage_error;
    if Backend::of_url(url) != Some(Backend::Postgres) {
        return fail(&format!(
            "`{}` is not a postgres:// URL",
            crate::store::redact_url(url)
        ));
    }
    let source_url = cfg.database_url();
    if Backend::of_url(&source_url) != Some(Backend::Sqlite) {
        return fail(&format!(
            "the configured store ({}) is not SQLite: there is nothing to migrate",
            redact_url(&source_url)
        ));
    }
    let password = match password_file {
        None => None,
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => return fail(&format!("{}: {e}", f.display())),
        },
    };
    // The daemon must not write to the SQLite file while it is copied: its lock is held to the
    // end, and a running daemon (which holds it) makes this refuse.
    let data = cfg.data_dir();
    let _lock = match crate::durable::lock_dir(&data) {
        Ok(l) => l,
        Err(e) => {
            return fail(&format!(
                "{e}: stop the daemon first (systemctl stop paygate)"
            ));
        }
    };
    let me = crate::daemon::folders::current_user();
    let rt = super::current_thread_runtime();
    rt.block_on(async {
        let source = match Store::open(&source_url).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let target = match Store::open_with_password(url, password.as_deref()).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        println!(
            "copying {} into {}",
            redact_url(&source_url),
            redact_url(url)
        );
        let copied = match source
            .copy_to(&target, |table, n| {
                if n % 100_000 == 0 {
                    println!("  {table}: {n} rows");
                }
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return fail(&e),
        };
        for (table, n) in &copied.rows {
            println!("  {table:<18} {n:>9} rows");
        }
        // Batches sealed but not yet sent: their sealed files go into the store too, so that
        // any instance on it sends exactly those bytes.
        let unsent = match source
            .batches_in(&[
                crate::model::BatchState::Sealed,
                crate::model::BatchState::Uploading,
            ])
            .await
        {
            Ok(b) => b,
            Err(e) => return fail(&e),
        };
        for b in unsent {
            let (Some(path), Some(sha)) = (&b.sealed_path, &b.sealed_sha256) else {
                continue;
            };
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return fail(&format!(
                        "batch {} is sealed but not sent, and its sealed file {path} cannot be read ({e}); restore it and run again into an empty database",
                        b.id
                    ));
                }
            };
            let got = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&bytes))
            };
            if &got != sha {
                return fail(&format!(
                    "batch {}: the sealed file {path} is not the one recorded (SHA-256 {got}, recorded {sha})",
                    b.id
                ));
            }
            if let Err(e) = target.put_sealed_bytes(b.id, &bytes).await {
                return fail(&e);
            }
            println!("  batch {}: sealed file {path} kept in the store", b.id);
        }
        let details = format!(
            "copied from {} into {}; audit entries {} verified, head {}",
            redact_url(&source_url),
            redact_url(url),
            copied.audit_entries,
            copied.head
        );
        if let Err(e) = target.audit_event(&me, "store.migrated", None, &details).await {
            return fail(&e);
        }
        source.close().await;
        target.close().await;
        println!(
            "verified on the target: every table as many rows, the audit chain of {} entries intact at the same head",
            copied.audit_entries
        );
        println!(
            "\nNext: in {} replace paygate.database (if set) with\n  [store]\n  url = \"{}\"{}\nand start paygate. The SQLite file was not changed: keep it until the new store has run.",
            config_path.display(),
            redact_url(url),
            if password.is_some() {
                "\n  password_file = \"/etc/paygate/db-password\"   # or the systemd credential paygate-db-password"
            } else {
                ""
            }
        );
        Exit::Ok
    })
}
