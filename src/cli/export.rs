//! `paygate export --batch ID --to DIR`: the decrypted originals of one batch for an auditor —
//! its source file, rendered and sealed bank files, the bank's return files and its result
//! reports — each checked against the SHA-256 recorded when it was archived, with a
//! `SHA256SUMS` beside them. Audited.

use super::Exit;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The batch
    #[arg(long)]
    batch: i64,
    /// A folder that does not exist yet, or is empty (created 0700)
    #[arg(long)]
    to: PathBuf,
    /// The archive key's secret key file [default: the company key, when there is no [archive]]
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn run(args: Args, config_path: &Path) -> Exit {
    let cfg = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let fail = super::usage_error;
    let key = match (&args.key, &cfg.archive, &cfg.company.pgp) {
        (Some(k), _, _) => k.clone(),
        (None, None, Some(c)) => cfg.resolve(&c.secret_key),
        _ => {
            return fail(&"--key: name the archive key's secret key file (the auditor's)");
        }
    };
    let secret = match crate::archive::ArchiveSecret::load(&key) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if args.to.exists()
        && std::fs::read_dir(&args.to)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return fail(&format!(
            "{}: exists and is not empty; export into a new folder",
            args.to.display()
        ));
    }
    if let Err(e) = crate::durable::create_private_dir(&args.to) {
        return fail(&format!("{}: {e}", args.to.display()));
    }
    let rt = super::current_thread_runtime();
    rt.block_on(async {
        let store = match crate::store::Store::open_configured(&cfg).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        if let Err(e) = store.batch(args.batch).await {
            return fail(&e);
        }
        let files = match store.archived_of(args.batch).await {
            Ok(f) => f,
            Err(e) => return fail(&e),
        };
        if files.is_empty() {
            return fail(&format!("batch {}: nothing archived", args.batch));
        }
        let mut sums = String::new();
        let mut bad = 0;
        for f in &files {
            let dir = args.to.join(&f.kind);
            if let Err(e) = crate::durable::create_private_dir(&dir) {
                return fail(&format!("{}: {e}", dir.display()));
            }
            // Two files of one name (two answers from the bank called the same): the later
            // one gets its archive number.
            let mut local = crate::transport::safe_local_name(&f.name);
            if dir.join(&local).exists() {
                local = format!("{local}.{}", f.id);
            }
            let dst = dir.join(&local);
            match secret.decrypt(Path::new(&f.path), &dst) {
                Ok(sha) if sha == f.sha256 => {
                    sums.push_str(&format!("{sha}  {}/{local}\n", f.kind));
                    println!("{}/{local}  ({})", f.kind, f.name);
                }
                Ok(sha) => {
                    bad += 1;
                    eprintln!(
                        "paygate: {}: decrypted, but its SHA-256 is {sha}, not the {} recorded when it was archived",
                        f.path, f.sha256
                    );
                }
                Err(e) => {
                    bad += 1;
                    eprintln!("paygate: {e}");
                }
            }
        }
        let sums_path = args.to.join("SHA256SUMS");
        if let Err(e) = crate::durable::write(&sums_path, |w| w.write_all(sums.as_bytes())) {
            return fail(&format!("{}: {e}", sums_path.display()));
        }
        let me = crate::daemon::folders::current_user();
        let details = format!(
            "batch {}: {} files exported to {} ({} failed)",
            args.batch,
            files.len() - bad,
            args.to.display(),
            bad
        );
        if let Err(e) = store
            .audit_batch(&me, "export", args.batch, &details, chrono::Utc::now())
            .await
        {
            return fail(&e);
        }
        if bad > 0 {
            return Exit::InputErrors;
        }
        println!("{details}");
        Exit::Ok
    })
}
