//! Delivery benchmark: `cargo bench --bench delivery [-- ROWS]` (default 1,000,000 payments).
//!
//! Converts a generated payroll of ROWS payments to pain.001.001.09, then measures, in the same
//! run and on the same file: `paygate seal` against `gpg --sign --encrypt` (same keys, binary
//! output, ZIP compression), and `paygate send` over SFTP to a local OpenSSH sshd against the
//! OpenSSH `sftp` client uploading the same file (the sealed file, which compresses well, and
//! the uncompressed document, for raw throughput). `paygate send` is given the SHA-256 the way
//! the daemon has it from the sealing record (`--sha256`: checked as the bytes are sent); a
//! last row times it without, hashing the file first. Best of 5 wall times (loopback runs vary by ±20%); the ratio is
//! paygate ÷ reference (target: within 1.2×).

mod common;
#[allow(dead_code)]
#[path = "../tests/delivery/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

fn time(mut f: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

fn ok(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let w = harness::World::new("bench");
    let bin = env!("CARGO_BIN_EXE_paygate");
    // Binary output and ZIP compression on both sides.
    let cfg = std::fs::read_to_string(&w.config).unwrap().replace(
        "[banks.bank.transport]",
        "armor = false\ncompression = \"zip\"\n\n[banks.bank.transport]",
    );
    let cfg = cfg.replace("[channels.supplier]", "[channels.payroll]\nkind = \"payroll\"\nbank = \"bank\"\ndebtor_account = \"cny\"\nfolder = \"payroll\"\nlimits = { max_file_bytes = 2_000_000_000, max_rows = 5_000_000 }\n\n[channels.supplier]")
        .replace("[banks.bank]\nname = \"Test bank\"\ncurrencies = [\"EUR\"]", "[banks.bank]\nname = \"Test bank\"\ncurrencies = [\"EUR\", \"CNY\"]\ncharset = \"utf8\"")
        .replace("[company.accounts.eur]", "[company.accounts.cny]\nnumber = \"1001244309300012345\"\ncnaps = \"102290024433\"\ncurrency = \"CNY\"\n\n[company.accounts.eur]");
    std::fs::write(&w.config, cfg).unwrap();
    let csv = w.dir.join("payroll.csv");
    common::write_csv(&csv, rows);
    let xml = w.dir.join("pain001.xml");
    ok(Command::new(bin)
        .arg("--config")
        .arg(&w.config)
        .args(["convert"])
        .arg(&csv)
        .args([
            "--channel",
            "payroll",
            "--format",
            "pain.001.001.09",
            "--as-of",
            "2026-11-30",
            "-o",
        ])
        .arg(&xml));
    let mb = std::fs::metadata(&xml).unwrap().len() as f64 / 1e6;
    // The company key in a GnuPG home, for the reference run.
    let company_gpg = w.dir.join("company-gpg");
    std::fs::create_dir_all(&company_gpg).unwrap();
    let gpg = |args: &[&str]| {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", &company_gpg)
            .args(["--batch", "--no-tty", "--trust-model", "always"])
            .args(args);
        c
    };
    ok(&mut gpg(&[
        "--import",
        w.dir.join("keys/company.sec.asc").to_str().unwrap(),
    ]));
    ok(&mut gpg(&[
        "--import",
        w.dir.join("keys/bank.asc").to_str().unwrap(),
    ]));
    let sealed = w.dir.join("ACME_BENCH.pgp");
    let gpg_out = w.dir.join("gpg.pgp");
    let seal = time(|| {
        let _ = std::fs::remove_file(&sealed);
        ok(Command::new(bin)
            .arg("--config")
            .arg(&w.config)
            .arg("seal")
            .arg(&xml)
            .args(["--bank", "bank", "-o"])
            .arg(&sealed));
    });
    let reference = time(|| {
        ok(&mut gpg(&[
            "--yes",
            "--compress-algo",
            "zip",
            "-u",
            &w.company_fpr,
            "-r",
            &w.bank_gpg.fpr,
            "-r",
            &w.company_fpr,
            "--sign",
            "--encrypt",
            "-o",
            gpg_out.to_str().unwrap(),
            xml.to_str().unwrap(),
        ]));
    });
    let sealed_mb = std::fs::metadata(&sealed).unwrap().len() as f64 / 1e6;
    // Uploads of the same sealed file.
    let remote = w.sshd.root.join("in");
    // As the daemon sends: with the SHA-256 recorded at sealing, checked as the bytes go.
    let sha_of = |p: &std::path::Path| paygate::delivery::sha256_file(p).unwrap().0;
    // `paygate send FILE`, the remote copy removed first; with the digest when given.
    let send_timed = |file: &std::path::Path, remote_name: &str, sha: Option<&str>| {
        time(|| {
            let _ = std::fs::remove_file(remote.join(remote_name));
            let mut c = Command::new(bin);
            c.arg("--config")
                .arg(&w.config)
                .arg("send")
                .arg(file)
                .args(["--bank", "bank"]);
            if let Some(sha) = sha {
                c.args(["--sha256", sha]);
            }
            ok(&mut c);
        })
    };
    let send = send_timed(&sealed, "ACME_BENCH.pgp", Some(&sha_of(&sealed)));
    let batch = w.dir.join("sftp.batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}/openssh.pgp\n",
            sealed.display(),
            remote.display()
        ),
    )
    .unwrap();
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    // The OpenSSH client, with the same key and the same pinned host key.
    let openssh_put = || {
        ok(Command::new("sftp")
            .args(["-q", "-b"])
            .arg(&batch)
            .args(["-i"])
            .arg(&w.identity)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", w.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-P",
                &w.sshd.port.to_string(),
            ])
            .arg(format!("{user}@127.0.0.1")))
    };
    let sftp = time(|| {
        let _ = std::fs::remove_file(remote.join("openssh.pgp"));
        openssh_put();
    });
    assert_eq!(
        std::fs::read(remote.join("ACME_BENCH.pgp")).unwrap(),
        std::fs::read(&sealed).unwrap()
    );
    // Raw SFTP throughput: the uncompressed document itself, the same way on both sides.
    let send_raw = send_timed(&xml, "pain001.xml", Some(&sha_of(&xml)));
    // An admin's `paygate send FILE` without a recorded digest hashes the file first.
    let send_raw_hashing = send_timed(&xml, "pain001.xml", None);
    std::fs::write(
        &batch,
        format!("put {} {}/openssh.xml\n", xml.display(), remote.display()),
    )
    .unwrap();
    let sftp_raw = time(|| {
        let _ = std::fs::remove_file(remote.join("openssh.xml"));
        openssh_put();
    });
    let row = |what: &str, ours: Duration, theirs: Duration, size: f64, reference: &str| {
        println!(
            "{what:<8} {size:>9.1} MB   paygate {:>7.2} s ({:>6.1} MB/s)   {reference:<22} {:>7.2} s ({:>6.1} MB/s)   ratio {:.2}",
            ours.as_secs_f64(),
            size / ours.as_secs_f64(),
            theirs.as_secs_f64(),
            size / theirs.as_secs_f64(),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    };
    println!("delivery of a {rows}-payment pain.001.001.09 ({mb:.1} MB), best of 5");
    row("seal", seal, reference, mb, "gpg --sign --encrypt");
    row("upload", send, sftp, sealed_mb, "OpenSSH sftp put");
    row("upload", send_raw, sftp_raw, mb, "OpenSSH sftp put");
    row(
        "upload*",
        send_raw_hashing,
        sftp_raw,
        mb,
        "OpenSSH sftp put",
    );
    println!("(upload: with the recorded SHA-256, as the daemon sends; upload*: hashing first)");
}
