//! Test servers and peers: an OpenSSH sshd on 127.0.0.1 with its own host key, GnuPG homes
//! for the bank, and a runner for the real binary. Every wait has a deadline; every process
//! started here is stopped by its PID when the test ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn require(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{tool}` is not installed: these tests need real servers and peers. Install it with `apt-get install {package}` (the README's test command, .ci/test, does this)."
    );
}

/// Polls `cond` until it holds, for at most `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs a command to completion within `secs`, or kills it and fails.
pub fn output_within(mut cmd: Command, secs: u64, stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::process::Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Runs the real paygate binary; returns its exit code and everything it printed.
pub fn run_paygate(config: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paygate"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_BACKTRACE", "0");
    let o = output_within(cmd, 120, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

pub fn ssh_keygen(path: &Path) {
    let kg = require("ssh-keygen", "openssh-client");
    let _ = std::fs::remove_file(path);
    let o = output_within(
        {
            let mut c = Command::new(kg);
            c.args(["-q", "-t", "ed25519", "-N", "", "-C", "paygate-test", "-f"])
                .arg(path);
            c
        },
        30,
        None,
    );
    assert!(
        o.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every process below `pid` (sshd forks a process per connection, which may leave its group).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if let Some(pp) = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
        {
            parent.push((p, pp));
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(x) = frontier.pop() {
        for (c, pp) in &parent {
            if *pp == x {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

pub struct Sshd {
    pub dir: PathBuf,
    /// The folder the bank's SFTP area lives in: `in/` (uploads) and `out/` (returns).
    pub root: PathBuf,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Sshd {
    pub fn new(dir: &Path, authorized: &Path) -> Sshd {
        require("sshd", "openssh-server");
        std::fs::create_dir_all(dir).unwrap();
        let root = dir.join("sftp");
        for d in ["in", "out"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        ssh_keygen(&dir.join("host_key"));
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nSubsystem sftp internal-sftp\n\
                 LogLevel ERROR\n",
                hk = dir.join("host_key").display(),
                pid = dir.join("sshd.pid").display(),
                ak = authorized.display(),
            ),
        )
        .unwrap();
        let mut s = Sshd {
            dir: dir.to_path_buf(),
            root,
            port,
            config,
            child: None,
        };
        s.start();
        s
    }

    pub fn start(&mut self) {
        let sshd = require("sshd", "openssh-server");
        // The privilege-separation folder is compiled into sshd.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(self.dir.join("sshd.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            use std::os::unix::process::CommandExt;
            let mut child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().unwrap())
                .process_group(0)
                .spawn()
                .expect("start sshd");
            // Ready when it answers with its SSH banner.
            let ready = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                        break true;
                    }
                }
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may still be held by the previous instance's connections: try again.
            assert!(
                Instant::now() < deadline,
                "sshd did not start on 127.0.0.1:{}; its log: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server and every connection it is serving, at once (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pids = descendants(child.id());
            // SAFETY: signals to processes this test started (the server and its children).
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
                for p in pids {
                    libc::kill(p as i32, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap()
    }

    /// `SHA256:…` as ssh-keygen -l prints it.
    pub fn host_fingerprint(&self) -> String {
        let mut c = Command::new(require("ssh-keygen", "openssh-client"));
        c.arg("-lf").arg(self.dir.join("host_key.pub"));
        let o = output_within(c, 30, None);
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A GnuPG home with one key (Ed25519 signing primary, Cv25519 encryption subkey).
pub struct Gpg {
    pub home: PathBuf,
    pub fpr: String,
}

impl Gpg {
    pub fn new(home: &Path, userid: &str) -> Gpg {
        require("gpg", "gnupg");
        std::fs::create_dir_all(home).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut g = Gpg {
            home: home.to_path_buf(),
            fpr: String::new(),
        };
        g.gpg(
            &[
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-generate-key",
                userid,
                "ed25519",
                "sign",
                "2y",
            ],
            None,
        );
        let list = g.gpg(&["--list-keys", "--with-colons"], None);
        let fpr = String::from_utf8_lossy(&list.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        g.gpg(
            &[
                "--passphrase",
                "",
                "--pinentry-mode",
                "loopback",
                "--quick-add-key",
                &fpr,
                "cv25519",
                "encr",
                "2y",
            ],
            None,
        );
        g.fpr = fpr;
        g
    }

    fn gpg(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut c = Command::new(require("gpg", "gnupg"));
        c.env("GNUPGHOME", &self.home)
            .args(["--batch", "--no-tty", "--trust-model", "always"])
            .args(args);
        let o = output_within(c, 60, stdin);
        assert!(
            o.status.success() || args.contains(&"-d"),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    pub fn export(&self, to: &Path) {
        let o = self.gpg(&["--armor", "--export", &self.fpr], None);
        std::fs::write(to, o.stdout).unwrap();
    }

    pub fn import(&self, key: &Path) {
        self.gpg(&["--import", key.to_str().unwrap()], None);
    }

    pub fn sign_encrypt(&self, plain: &[u8], to: &str, out: &Path) {
        self.gpg(
            &[
                "--yes",
                "-r",
                to,
                "--sign",
                "--encrypt",
                "-o",
                out.to_str().unwrap(),
            ],
            Some(plain),
        );
    }

    pub fn encrypt_only(&self, plain: &[u8], to: &str, out: &Path) {
        self.gpg(
            &["--yes", "-r", to, "--encrypt", "-o", out.to_str().unwrap()],
            Some(plain),
        );
    }

    pub fn sign_only(&self, plain: &[u8], out: &Path) {
        self.gpg(
            &["--yes", "--sign", "-o", out.to_str().unwrap()],
            Some(plain),
        );
    }

    /// Decrypts and verifies; returns the plaintext and GnuPG's status lines.
    pub fn decrypt(&self, file: &Path) -> (Vec<u8>, String) {
        let o = self.gpg(&["--status-fd", "2", "-d", file.to_str().unwrap()], None);
        (o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A company (paygate with its key and config) and its bank (sshd + GnuPG), wired together.
pub struct World {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub known_hosts: PathBuf,
    pub identity: PathBuf,
    pub company_fpr: String,
    pub bank_gpg: Gpg,
    pub sshd: Sshd,
}

impl World {
    pub fn new(name: &str) -> World {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pg-{name}-"))
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let mut kg = Command::new(env!("CARGO_BIN_EXE_paygate"));
        kg.args([
            "keys",
            "generate",
            "--userid",
            "Acme Treasury <treasury@acme.example>",
            "--dir",
        ])
        .arg(&keys)
        .args(["--name", "company"]);
        let o = output_within(kg, 60, None);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let company_fpr = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("fingerprint "))
            .unwrap()
            .to_string();
        let bank_gpg = Gpg::new(&dir.join("bank-gpg"), "Bank H2H <h2h@bank.example>");
        bank_gpg.export(&keys.join("bank.asc"));
        bank_gpg.import(&keys.join("company.pub.asc"));
        let identity = keys.join("id_ed25519");
        ssh_keygen(&identity);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(identity.with_extension("pub"), &authorized).unwrap();
        let sshd = Sshd::new(&dir.join("sshd"), &authorized);
        let known_hosts = keys.join("known_hosts");
        let hk: Vec<String> = sshd
            .host_public_key()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {} {}\n", sshd.port, hk[0], hk[1]),
        )
        .unwrap();
        let w = World {
            data: dir.join("data"),
            config: dir.join("paygate.toml"),
            known_hosts,
            identity,
            company_fpr,
            bank_gpg,
            sshd,
            dir,
            _tmp: tmp,
        };
        w.set_transport_extra("", true);
        w
    }

    /// (Re)writes the config; `extra` goes into the transport table.
    pub fn set_transport_extra(&self, extra: &str, with_known_hosts: bool) {
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string();
        let kh = if with_known_hosts {
            format!("known_hosts = \"{}\"\n", self.known_hosts.display())
        } else {
            String::new()
        };
        std::fs::write(
            &self.config,
            format!(
                r#"
[paygate]
data_dir = "data"

[company]
name = "Acme (Shanghai) Trading Co., Ltd."
country = "CN"
short_name = "ACME"

[company.pgp]
secret_key = "keys/company.sec.asc"
fingerprint = "{cfpr}"

[company.accounts.eur]
iban = "DE89370400440532013000"
bic = "COBADEFFXXX"
currency = "EUR"

[banks.bank]
name = "Test bank"
currencies = ["EUR"]

[banks.bank.pgp]
keys = ["keys/bank.asc"]
fingerprints = ["{bfpr}"]

[banks.bank.transport]
type = "sftp"
host = "127.0.0.1"
port = {port}
user = "{user}"
identity = "keys/id_ed25519"
{kh}upload_dir = "{root}/in"
download_dir = "{root}/out"
timeout_secs = 10
attempts = 8
backoff_ms = 200
{extra}
[channels.supplier]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "supplier"
"#,
                cfpr = self.company_fpr,
                bfpr = self.bank_gpg.fpr,
                port = self.sshd.port,
                root = self.sshd.root.display(),
            ),
        )
        .unwrap();
    }

    pub fn run(&self, args: &[&str]) -> (i32, String) {
        run_paygate(&self.config, args)
    }

    /// Runs and expects exit code 0.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.run(args);
        assert_eq!(code, 0, "paygate {args:?} failed:\n{out}");
        out
    }

    /// `paygate seal FILE --bank bank -o OUT`, expected to succeed; returns what it printed.
    pub fn seal(&self, file: &Path, out: &Path) -> String {
        self.ok(&[
            "seal",
            file.to_str().unwrap(),
            "--bank",
            "bank",
            "-o",
            out.to_str().unwrap(),
        ])
    }
}

/// A webhook receiver on 127.0.0.1 (a port it picks): records every request body and answers
/// with the given statuses in turn, then 200. Stopped when dropped.
#[allow(dead_code)]
pub struct HttpSink {
    pub port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[allow(dead_code)]
impl HttpSink {
    pub fn start(statuses: &[u16]) -> HttpSink {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let mut script: std::collections::VecDeque<u16> = statuses.iter().copied().collect();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                b.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let status = script.pop_front().unwrap_or(200);
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
        });
        HttpSink { port, bodies, stop }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits (at most `secs`) until the bodies received satisfy `cond`; returns them.
    pub fn wait_for(&self, secs: u64, mut cond: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let mut got = vec![];
        wait_until("the webhook to be called", secs, || {
            got = self.bodies();
            cond(&got)
        });
        got
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// GET over plain HTTP from 127.0.0.1:`port`; the body (within 30 s).
#[allow(dead_code)]
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map_or(out.clone(), |(_, b)| b.to_string())
}

/// A self-signed certificate for 127.0.0.1 (PEM) and its key, made here.
#[allow(dead_code)]
pub fn self_signed_cert() -> (Vec<u8>, openssl::pkey::PKey<openssl::pkey::Private>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build().to_pem().unwrap(), key)
}

/// An SMTP server on 127.0.0.1 that requires STARTTLS (with `self_signed_cert`) before it
/// takes a message; records each message's text. Stopped when dropped.
#[allow(dead_code)]
pub struct SmtpSink {
    pub port: u16,
    pub cert_pem: Vec<u8>,
    messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[allow(dead_code)]
impl SmtpSink {
    pub fn start() -> SmtpSink {
        use openssl::ssl::{SslAcceptor, SslMethod};
        use std::io::{BufRead, BufReader};
        let (cert_pem, key) = self_signed_cert();
        let cert = openssl::x509::X509::from_pem(&cert_pem).unwrap();
        let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acc.set_private_key(&key).unwrap();
        acc.set_certificate(&cert).unwrap();
        let acceptor = std::sync::Arc::new(acc.build());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s) = (messages.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(20)));
                let (acceptor, m) = (acceptor.clone(), m.clone());
                std::thread::spawn(move || {
                    trait Rw: Read + Write {}
                    impl<T: Read + Write> Rw for T {}
                    let mut plain = Some(conn);
                    let mut tls: Option<BufReader<Box<dyn Rw>>> = None;
                    let mut greet = plain.as_ref().unwrap().try_clone().unwrap();
                    let _ = greet.write_all(b"220 sink ESMTP\r\n");
                    let mut r: BufReader<Box<dyn Rw>> =
                        BufReader::new(Box::new(plain.as_ref().unwrap().try_clone().unwrap()));
                    let mut data: Option<String> = None;
                    loop {
                        let stream = tls.as_mut().unwrap_or(&mut r);
                        let mut line = String::new();
                        if stream.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(d) = data.as_mut() {
                            if line == ".\r\n" {
                                m.lock().unwrap().push(std::mem::take(d));
                                data = None;
                                let _ = stream.get_mut().write_all(b"250 queued\r\n");
                            } else {
                                d.push_str(&line);
                            }
                            continue;
                        }
                        let cmd = line.to_ascii_uppercase();
                        let secure = tls.is_some();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            if secure {
                                b"250 sink\r\n"
                            } else {
                                b"250-sink\r\n250 STARTTLS\r\n"
                            }
                        } else if cmd.starts_with("STARTTLS") {
                            let _ = r.get_mut().write_all(b"220 go ahead\r\n");
                            let Ok(s) = acceptor.accept(plain.take().unwrap()) else {
                                return;
                            };
                            tls = Some(BufReader::new(Box::new(s)));
                            continue;
                        } else if cmd.starts_with("QUIT") {
                            let stream = tls.as_mut().unwrap_or(&mut r);
                            let _ = stream.get_mut().write_all(b"221 bye\r\n");
                            return;
                        } else if !secure {
                            b"530 Must issue a STARTTLS command first\r\n"
                        } else if cmd.starts_with("DATA") {
                            data = Some(String::new());
                            b"354 go\r\n"
                        } else {
                            b"250 ok\r\n"
                        };
                        let stream = tls.as_mut().unwrap_or(&mut r);
                        let _ = stream.get_mut().write_all(reply);
                    }
                });
            }
        });
        SmtpSink {
            port,
            cert_pem,
            messages,
            stop,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}
