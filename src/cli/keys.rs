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
}

pub fn run(cmd: Command) -> Exit {
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
