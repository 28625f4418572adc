//! `paygate seal` and `paygate open`: sign+encrypt or decrypt+verify one file exactly as the
//! daemon does, for troubleshooting with the bank.

use super::{Exit, load_config};
use crate::delivery::{self, DeliveryError};
use crate::seal::SealError;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(clap::Args, Debug)]
pub struct Args {
    file: PathBuf,
    /// The bank whose keys apply
    #[arg(long)]
    bank: String,
    /// Output file (written only when the operation succeeds)
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
}

/// Exit code for a delivery error: key and config problems are configuration errors.
pub(crate) fn exit_for(e: &DeliveryError) -> Exit {
    match e {
        DeliveryError::NoSuchBank(_) => Exit::Usage,
        DeliveryError::NotConfigured { .. } => Exit::Config,
        DeliveryError::Seal(e) => match **e {
            SealError::Refused(_) => Exit::InputErrors,
            SealError::Io(_) => Exit::Usage,
            _ => Exit::Config,
        },
        DeliveryError::Io(..) => Exit::Usage,
        _ => Exit::Usage,
    }
}

fn write_out(
    out: &Path,
    f: impl FnOnce(&mut std::fs::File) -> Result<(), SealError>,
) -> Result<(), DeliveryError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| DeliveryError::Io(dir.to_path_buf(), e))?;
    f(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| DeliveryError::Io(out.to_path_buf(), e))?;
    tmp.persist(out)
        .map_err(|e| DeliveryError::Io(out.to_path_buf(), e.error))?;
    Ok(())
}

/// The bank's keyring (expiry warnings said) and the input file, as `seal` and `open` need.
fn keyring_and_input(
    cfg: &crate::config::Config,
    args: &Args,
) -> Result<(crate::seal::Keyring, std::fs::File), DeliveryError> {
    let (kr, warnings) = delivery::keyring(cfg, &args.bank, SystemTime::now())?;
    for w in warnings {
        eprintln!(
            "warning: key {} ({}) expires soon",
            w.fingerprint,
            w.path.display()
        );
    }
    let input =
        std::fs::File::open(&args.file).map_err(|e| DeliveryError::Io(args.file.clone(), e))?;
    Ok((kr, input))
}

pub fn seal(args: Args, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let result = (|| -> Result<(String, String), DeliveryError> {
        let (kr, mut input) = keyring_and_input(&cfg, &args)?;
        let mut sha = String::new();
        write_out(&args.output, |out| {
            let mut hashed = delivery::HashingWriter::new(out);
            kr.seal(&mut input, &mut hashed)?;
            sha = hashed.finish().1;
            Ok(())
        })?;
        Ok((kr.company_fingerprint().to_hex(), sha))
    })();
    match result {
        Ok((fp, sha)) => {
            println!(
                "sealed {} for bank {}: signed by {fp} → {} (SHA-256 {sha}; `paygate send --sha256 {sha}` checks it as it sends)",
                args.file.display(),
                args.bank,
                args.output.display()
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("paygate: {e}");
            exit_for(&e)
        }
    }
}

pub fn open(args: Args, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let result = (|| -> Result<crate::seal::Opened, DeliveryError> {
        let (kr, mut input) = keyring_and_input(&cfg, &args)?;
        let mut opened = None;
        write_out(&args.output, |out| {
            opened = Some(kr.open(&mut input, out)?);
            Ok(())
        })?;
        Ok(opened.unwrap_or_default())
    })();
    match result {
        Ok(o) => {
            match (&o.signer, o.signed_at) {
                (Some(s), Some(at)) => println!(
                    "good signature from bank key {s}, made {}",
                    chrono::DateTime::<chrono::Utc>::from(at).format("%Y-%m-%d %H:%M:%S UTC")
                ),
                (Some(s), None) => println!("good signature from bank key {s}"),
                (None, _) => println!(
                    "NOT SIGNED: accepted only because banks.{}.pgp.require_signature = false",
                    args.bank
                ),
            }
            println!(
                "decrypted {} → {}",
                args.file.display(),
                args.output.display()
            );
            Exit::Ok
        }
        Err(e) => {
            eprintln!("paygate: {}: refused: {e}", args.file.display());
            exit_for(&e)
        }
    }
}
