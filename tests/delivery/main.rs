//! End-to-end delivery tests with real parts: an OpenSSH `sshd` started here on 127.0.0.1
//! (random port, its own host key, internal-sftp), real GnuPG as the bank, and the real
//! `paygate` binary. Nothing skips: a missing `sshd` or `gpg` fails with the package to install
//! (the README's test command installs them). Every wait has a deadline.

mod harness;

use harness::*;

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn sealed_upload_is_read_by_the_bank_with_gnupg() {
    let w = World::new("upload");
    let xml = w.dir.join("batch.xml");
    std::fs::write(
        &xml,
        b"<Document>payroll \xe5\xb7\xa5\xe8\xb5\x84</Document>\n",
    )
    .unwrap();
    let sealed = w.dir.join("ACME_MSG1.xml.pgp");
    w.seal(&xml, &sealed);
    let out = w.ok(&["send", sealed.to_str().unwrap(), "--bank", "bank"]);
    assert!(out.contains("uploaded ACME_MSG1.xml.pgp"), "{out}");
    let remote = w.sshd.root.join("in/ACME_MSG1.xml.pgp");
    assert_eq!(
        std::fs::read(&remote).unwrap(),
        std::fs::read(&sealed).unwrap()
    );
    assert!(!w.sshd.root.join("in/ACME_MSG1.xml.pgp.part").exists());
    // The bank decrypts with GnuPG and sees a good signature from the company key.
    let (plain, status) = w.bank_gpg.decrypt(&remote);
    assert_eq!(plain, std::fs::read(&xml).unwrap());
    assert!(status.contains("[GNUPG:] DECRYPTION_OKAY"), "{status}");
    assert!(
        status.contains("[GNUPG:] VALIDSIG") && status.contains(&w.company_fpr),
        "{status}"
    );
    // Sending again finds the completed file and sends nothing.
    let out = w.ok(&["send", sealed.to_str().unwrap(), "--bank", "bank"]);
    assert!(out.contains("already on bank bank's server"), "{out}");
    // A different file under the same name is never overwritten.
    std::fs::write(&xml, b"<Document>other</Document>\n").unwrap();
    let other = w.dir.join("other.pgp");
    w.seal(&xml, &other);
    let (code, out) = w.run(&[
        "send",
        other.to_str().unwrap(),
        "--bank",
        "bank",
        "--as",
        "ACME_MSG1.xml.pgp",
    ]);
    assert_ne!(code, 0);
    assert!(
        out.contains("a different file with this name is already on the server"),
        "{out}"
    );
}

#[test]
fn return_files_signed_by_the_bank_are_fetched_opened_and_never_processed_twice() {
    let w = World::new("fetch");
    let plain = b"<Document><CstmrPmtStsRpt>ACCP</CstmrPmtStsRpt></Document>\n";
    let good = w.sshd.root.join("out/PAIN002_1.xml.pgp");
    w.bank_gpg.sign_encrypt(plain, &w.company_fpr, &good);
    let sent_bytes = std::fs::read(&good).unwrap();
    let out = w.ok(&["fetch", "--bank", "bank"]);
    assert!(out.contains("PAIN002_1.xml.pgp"), "{out}");
    assert!(
        out.contains(&format!("signed by {}", w.bank_gpg.fpr)),
        "{out}"
    );
    // Handed on at once: this status report names no batch of ours, so it is kept as unmatched.
    assert!(
        out.contains("reconciled: pain.002 (no namespace): matches no batch"),
        "{out}"
    );
    // Processed: the plaintext and the download leave the spool; the file is kept only in
    // the archive, encrypted to the archive key (here the company's), under a name carrying
    // the content's hash.
    for sub in ["opened", "incoming"] {
        let left: Vec<_> = std::fs::read_dir(w.data.join("spool/bank").join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "left in {sub}/: {left:?}");
    }
    let archived: Vec<_> = std::fs::read_dir(w.data.join("archive/bank/return"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    let name = archived[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.ends_with("_PAIN002_1.xml.pgp"), "{name}");
    let bytes = std::fs::read(&archived[0]).unwrap();
    assert!(!bytes.windows(12).any(|w| w == b"CstmrPmtStsR"));
    // Recorded, then removed from the server.
    assert!(!good.exists());
    // The same file put back (a bank resend) is recognised and not processed again.
    std::fs::write(&good, &sent_bytes).unwrap();
    let out = w.ok(&["fetch", "--bank", "bank"]);
    assert!(out.contains("seen before"), "{out}");
    let out = w.ok(&["fetch", "--bank", "bank"]);
    assert!(out.contains("no files waiting"), "{out}");
}

#[test]
fn bad_return_files_are_quarantined_with_the_exact_reason() {
    let w = World::new("quarantine");
    let plain = b"<Document>status</Document>\n";
    let out_dir = w.sshd.root.join("out");
    // Signed by a key that is not the bank's pinned key.
    let mallory = Gpg::new(&w.dir.join("mallory"), "Mallory <m@evil.example>");
    mallory.import(&w.dir.join("keys/company.pub.asc"));
    mallory.sign_encrypt(plain, &w.company_fpr, &out_dir.join("a_wrong_signer.pgp"));
    // Encrypted but not signed.
    w.bank_gpg
        .encrypt_only(plain, &w.company_fpr, &out_dir.join("b_unsigned.pgp"));
    // Signed and encrypted, then damaged in transit.
    let tmp = w.dir.join("good.pgp");
    w.bank_gpg.sign_encrypt(plain, &w.company_fpr, &tmp);
    let mut bytes = std::fs::read(&tmp).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(out_dir.join("c_corrupted.pgp"), &bytes).unwrap();
    // Signed by the bank but not encrypted.
    w.bank_gpg
        .sign_only(plain, &out_dir.join("d_not_encrypted.pgp"));
    let (code, out) = w.run(&["fetch", "--bank", "bank"]);
    assert_eq!(code, 1, "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {out}"))
            .to_string()
    };
    // The issuer as the signature names it: the key id is the fingerprint's last 16 digits.
    assert!(
        line("a_wrong_signer.pgp").contains(&mallory.fpr[24..]),
        "{out}"
    );
    assert!(
        line("a_wrong_signer.pgp").contains("which is not one of the bank's pinned keys"),
        "{out}"
    );
    assert!(
        line("b_unsigned.pgp").contains("the message is not signed"),
        "{out}"
    );
    assert!(
        line("c_corrupted.pgp").contains("QUARANTINED")
            && line("c_corrupted.pgp").contains("damaged"),
        "{out}"
    );
    assert!(
        line("d_not_encrypted.pgp").contains("the message is not encrypted"),
        "{out}"
    );
    for n in [
        "a_wrong_signer.pgp",
        "b_unsigned.pgp",
        "c_corrupted.pgp",
        "d_not_encrypted.pgp",
    ] {
        let q: Vec<_> = std::fs::read_dir(w.data.join("quarantine/bank"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(&format!("{n}.reason.txt")))
            .collect();
        assert_eq!(q.len(), 1, "no reason file for {n}");
        assert!(
            !w.data
                .join("spool/bank/opened")
                .join(n.trim_end_matches(".pgp"))
                .exists(),
            "{n} was opened"
        );
    }
}

#[test]
fn host_keys_are_pinned_and_checked_on_every_connection() {
    let w = World::new("hostkey");
    // Unknown host: no pin at all. Refused, and the fingerprint and a known_hosts line shown.
    std::fs::write(&w.known_hosts, "").unwrap();
    let (code, out) = w.run(&["check", "--bank", "bank"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the server's host key is not pinned"), "{out}");
    assert!(out.contains(&w.sshd.host_fingerprint()), "{out}");
    assert!(
        out.contains(&format!("[127.0.0.1]:{} ssh-ed25519 ", w.sshd.port)),
        "{out}"
    );
    // Changed host key: the pin is another key.
    let other = w.dir.join("other_host_key");
    ssh_keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fields: Vec<&str> = other_pub.split_whitespace().collect();
    std::fs::write(
        &w.known_hosts,
        format!("[127.0.0.1]:{} {} {}\n", w.sshd.port, fields[0], fields[1]),
    )
    .unwrap();
    let (code, out) = w.run(&["check", "--bank", "bank"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("THE SERVER'S HOST KEY HAS CHANGED"), "{out}");
    let sealed = w.dir.join("x.pgp");
    std::fs::write(&sealed, b"x").unwrap();
    let (code, out) = w.run(&["send", sealed.to_str().unwrap(), "--bank", "bank"]);
    assert_ne!(code, 0);
    assert!(out.contains("HOST KEY HAS CHANGED"), "{out}");
    assert!(!w.sshd.root.join("in/x.pgp").exists());
    // Pinned by fingerprint in the config instead of known_hosts.
    w.set_transport_extra(
        &format!(
            "host_key_fingerprints = [\"{}\"]\n",
            w.sshd.host_fingerprint()
        ),
        false,
    );
    let out = w.ok(&["check", "--bank", "bank"]);
    assert!(out.contains("host key matches its pin"), "{out}");
    assert!(out.contains("upload folder"), "{out}");
}

#[test]
fn a_wrong_client_key_is_refused() {
    let w = World::new("auth");
    let wrong = w.dir.join("wrong_id");
    ssh_keygen(&wrong);
    std::fs::copy(&wrong, &w.identity).unwrap();
    let (code, out) = w.run(&["check", "--bank", "bank"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("authentication as"), "{out}");
    assert!(out.contains("was refused by the server"), "{out}");
}

#[test]
fn an_upload_interrupted_by_the_server_going_away_is_completed_exactly_once() {
    let mut w = World::new("interrupt");
    let big = w.dir.join("BIG_MSG.pgp");
    let data: Vec<u8> = (0..48u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    let part = w
        .sshd
        .root
        .join(format!("in/BIG_MSG.pgp.{}.part", &sha256_hex(&data)[..12]));
    let cfg = w.config.clone();
    let sender = std::thread::spawn(move || {
        run_paygate(&cfg, &["send", big.to_str().unwrap(), "--bank", "bank"])
    });
    // Stop the server as soon as the upload is under way, then bring it back.
    wait_until("the upload to start", 20, || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    w.sshd.stop();
    let partial = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    assert!(
        partial < data.len() as u64,
        "the upload finished before the server stopped"
    );
    w.sshd.start();
    let (code, out) = sender.join().unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("uploaded BIG_MSG.pgp"), "{out}");
    let files: Vec<String> = std::fs::read_dir(w.sshd.root.join("in"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files,
        vec!["BIG_MSG.pgp".to_string()],
        "exactly one final file, no .part"
    );
    assert!(
        std::fs::read(w.sshd.root.join("in/BIG_MSG.pgp")).unwrap() == data,
        "the file on the server is not the file sent"
    );
}

#[test]
fn a_part_leftover_from_a_crash_is_completed_and_a_stale_one_is_not_continued() {
    let w = World::new("leftover");
    let file = w.dir.join("CRASHED.pgp");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let id = &sha256_hex(&data)[..12];
    // An earlier process died after sending the first 100,000 bytes of this very file.
    std::fs::write(
        w.sshd.root.join(format!("in/CRASHED.pgp.{id}.part")),
        &data[..100_000],
    )
    .unwrap();
    // And a leftover of a different file under the same name (sealed again since): never continued.
    std::fs::write(
        w.sshd.root.join("in/CRASHED.pgp.000000000000.part"),
        vec![0xEE; 150_000],
    )
    .unwrap();
    let out = w.ok(&["send", file.to_str().unwrap(), "--bank", "bank"]);
    assert!(out.contains("uploaded CRASHED.pgp"), "{out}");
    assert!(
        std::fs::read(w.sshd.root.join("in/CRASHED.pgp")).unwrap() == data,
        "the file on the server is not the file sent"
    );
    assert!(
        !w.sshd
            .root
            .join(format!("in/CRASHED.pgp.{id}.part"))
            .exists()
    );
}

#[test]
fn a_file_that_is_not_the_recorded_one_is_never_committed() {
    let w = World::new("recorded");
    let xml = w.dir.join("batch.xml");
    std::fs::write(&xml, b"<Document>payroll</Document>\n").unwrap();
    let sealed = w.dir.join("ACME_REC.pgp");
    let out = w.seal(&xml, &sealed);
    // `seal` says the SHA-256 of what it wrote.
    let sha = sha256_hex(&std::fs::read(&sealed).unwrap());
    assert!(out.contains(&format!("SHA-256 {sha}")), "{out}");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let recorded = sha256_hex(&data);
    let file = w.dir.join("TAMPERED.pgp");
    let remote = |name: &str| w.sshd.root.join("in").join(name);
    let leftovers = || {
        std::fs::read_dir(w.sshd.root.join("in"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("TAMPERED"))
            .collect::<Vec<_>>()
    };
    let send = |sha: &str| {
        w.run(&[
            "send",
            file.to_str().unwrap(),
            "--bank",
            "bank",
            "--sha256",
            sha,
        ])
    };
    // Changed after it was recorded: the upload is refused before its commit.
    let mut changed = data.clone();
    changed[250_000] ^= 0x20;
    std::fs::write(&file, &changed).unwrap();
    let (code, out) = send(&recorded);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is not the file that was recorded"), "{out}");
    assert!(out.contains(&recorded), "{out}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    // A part on the server whose bytes are not the record's (left by an attempt that sent a
    // changed file and then failed): read back from the server and refused, though the local
    // file is the recorded one; the part is removed, so the next attempt starts afresh.
    let part = format!("TAMPERED.pgp.{}.part", &recorded[..12]);
    let mut changed = data.clone();
    changed[50_000] ^= 0x20;
    std::fs::write(remote(&part), &changed[..100_000]).unwrap();
    std::fs::write(&file, &data).unwrap();
    let (code, out) = send(&recorded);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is not the file that was recorded"), "{out}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    // The recorded bytes go through (continuing a good part), and a second send finds them.
    std::fs::write(remote(&part), &data[..100_000]).unwrap();
    let (code, out) = send(&recorded);
    assert_eq!(code, 0, "{out}");
    assert!(std::fs::read(remote("TAMPERED.pgp")).unwrap() == data);
    assert_eq!(leftovers(), ["TAMPERED.pgp"]);
    std::fs::write(&file, &changed).unwrap();
    let (code, out) = send(&recorded);
    assert_ne!(
        code, 0,
        "already there, but the local file is not the recorded one: {out}"
    );
    assert!(out.contains("is not the file that was recorded"), "{out}");
    assert!(out.contains("not counted as delivered"), "{out}");
    // A malformed digest is a usage error.
    let (code, out) = send("abc");
    assert_eq!(code, 2, "{out}");
}

#[test]
fn company_keys_with_loose_permissions_or_wrong_pins_are_refused() {
    let w = World::new("keys");
    use std::os::unix::fs::PermissionsExt;
    let sec = w.dir.join("keys/company.sec.asc");
    std::fs::set_permissions(&sec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let x = w.dir.join("x.xml");
    std::fs::write(&x, b"x").unwrap();
    let (code, out) = w.run(&[
        "seal",
        x.to_str().unwrap(),
        "--bank",
        "bank",
        "-o",
        w.dir.join("x.pgp").to_str().unwrap(),
    ]);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("is accessible by others (mode 0644)") && out.contains("chmod 600"),
        "{out}"
    );
    std::fs::set_permissions(&sec, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The bank key file replaced by another key: its fingerprint no longer matches the pin.
    let other = Gpg::new(&w.dir.join("other"), "Other <o@example>");
    other.export(&w.dir.join("keys/bank.asc"));
    let (code, out) = w.run(&[
        "seal",
        x.to_str().unwrap(),
        "--bank",
        "bank",
        "-o",
        w.dir.join("x.pgp").to_str().unwrap(),
    ]);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("but the config pins") && out.contains(&other.fpr),
        "{out}"
    );
    assert!(!w.dir.join("x.pgp").exists(), "nothing may be written");
}

#[test]
fn the_folder_transport_has_the_same_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["in", "out", "data"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    // A folder transport; `extra` goes into its table.
    let folder_config = |extra: &str| {
        paygate::config::Config::parse(
            &format!(
                r#"
[paygate]
data_dir = "data"
[company]
name = "Acme"
country = "CN"
[company.accounts.eur]
iban = "DE89370400440532013000"
currency = "EUR"
[banks.bank]
name = "Bank"
currencies = ["EUR"]
encryption = "none"
[banks.bank.transport]
type = "folder"
upload_dir = "in"
download_dir = "out"
{extra}
[channels.s]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "{}"
"#,
                root.join("s").display()
            ),
            root,
        )
        .unwrap()
    };
    let cfg = folder_config("");
    let file = root.join("F.pgp");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    std::fs::write(
        root.join(format!("in/F.pgp.{}.part", &sha256_hex(&data)[..12])),
        &data[..4_000],
    )
    .unwrap();
    // A file that is not the recorded one is refused before its commit, its part removed.
    let recorded = sha256_hex(&data);
    let mut tampered = data.clone();
    tampered[9_000] ^= 1;
    std::fs::write(&file, &tampered).unwrap();
    let e = paygate::delivery::send(&cfg, "bank", &file, "F.pgp", Some(&recorded), &|| true)
        .unwrap_err();
    assert!(
        e.to_string().contains("is not the file that was recorded"),
        "{e}"
    );
    assert!(!root.join("in/F.pgp").exists());
    // A part whose bytes are not the record's is read back and refused, and removed.
    std::fs::write(&file, &data).unwrap();
    let part = root.join(format!("in/F.pgp.{}.part", &sha256_hex(&data)[..12]));
    std::fs::write(&part, &tampered[..9_500]).unwrap();
    let e = paygate::delivery::send(&cfg, "bank", &file, "F.pgp", Some(&recorded), &|| true)
        .unwrap_err();
    assert!(
        e.to_string().contains("is not the file that was recorded"),
        "{e}"
    );
    assert!(!part.exists() && !root.join("in/F.pgp").exists());
    std::fs::write(&part, &data[..4_000]).unwrap();
    let (r, _, _) =
        paygate::delivery::send(&cfg, "bank", &file, "F.pgp", Some(&recorded), &|| true).unwrap();
    assert_eq!(
        r,
        paygate::transport::PutOutcome::Uploaded { bytes: 10_000 }
    );
    assert_eq!(std::fs::read(root.join("in/F.pgp")).unwrap(), data);
    let left: Vec<_> = std::fs::read_dir(root.join("in"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let (r, _, _) = paygate::delivery::send(&cfg, "bank", &file, "F.pgp", None, &|| true).unwrap();
    assert_eq!(
        r,
        paygate::transport::PutOutcome::AlreadyThere { bytes: 10_000 }
    );
    std::fs::write(&file, vec![8u8; 10_001]).unwrap();
    let e = paygate::delivery::send(&cfg, "bank", &file, "F.pgp", None, &|| true).unwrap_err();
    assert!(
        e.to_string().contains("a different file with this name"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(root.join("in/F.pgp")).unwrap(),
        data,
        "never overwritten"
    );
    // Written under its final name (use_temp_name = false), a changed file is refused before a
    // byte is written: nothing can be taken back once the bank may have seen it.
    let direct = folder_config("use_temp_name = false");
    let g = root.join("G.pgp");
    std::fs::write(&g, &tampered).unwrap();
    let e = paygate::delivery::send(&direct, "bank", &g, "G.pgp", Some(&recorded), &|| true)
        .unwrap_err();
    assert!(e.to_string().contains("nothing was sent"), "{e}");
    assert!(!root.join("in/G.pgp").exists());
    std::fs::write(&g, &data).unwrap();
    paygate::delivery::send(&direct, "bank", &g, "G.pgp", Some(&recorded), &|| true).unwrap();
    assert_eq!(std::fs::read(root.join("in/G.pgp")).unwrap(), data);
    // A fence that closes in the middle (the daemon's lease running out) stops the upload
    // between pieces and before its commit: a part, no file. Whoever holds it next continues
    // the part.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let h = root.join("H.pgp");
    std::fs::write(&h, &big).unwrap();
    let asked = std::cell::Cell::new(0u32);
    let closing = || {
        asked.set(asked.get() + 1);
        asked.get() <= 4
    };
    let e = paygate::delivery::send(&cfg, "bank", &h, "H.pgp", Some(&sha256_hex(&big)), &closing)
        .unwrap_err();
    assert!(e.to_string().contains("no longer holds it"), "{e}");
    assert!(!root.join("in/H.pgp").exists(), "nothing committed");
    let part = root.join(format!("in/H.pgp.{}.part", &sha256_hex(&big)[..12]));
    let written = std::fs::metadata(&part).unwrap().len();
    assert!(written > 0 && written < 300_000, "{written}");
    let (r, _, _) =
        paygate::delivery::send(&cfg, "bank", &h, "H.pgp", Some(&sha256_hex(&big)), &|| true)
            .unwrap();
    assert_eq!(
        r,
        paygate::transport::PutOutcome::Uploaded { bytes: 300_000 }
    );
    assert_eq!(std::fs::read(root.join("in/H.pgp")).unwrap(), big);
    // A fence closed from the start sends nothing.
    let e = paygate::delivery::send(&cfg, "bank", &g, "G2.pgp", None, &|| false).unwrap_err();
    assert!(e.to_string().contains("no longer holds it"), "{e}");
    assert!(!root.join("in/G2.pgp").exists());
}
