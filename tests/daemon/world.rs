//! A company running `paygate run` and its bank played by `paygate bank-sim`, over a real
//! OpenSSH sshd (started here on 127.0.0.1) or a folder transport. Both are real processes of
//! the real binary, started and stopped by their PIDs; every wait has a deadline.

use crate::harness::{self, Sshd, output_within, require, ssh_keygen};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub enum Wire {
    Sftp,
    Folder,
}

pub struct World {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub sim_config: PathBuf,
    pub sim_state: PathBuf,
    pub keys: PathBuf,
    daemon: Option<Child>,
    sim: Option<Child>,
    pub daemon_log: PathBuf,
    _sshd: Option<Sshd>,
    transport: String,
    extra_channels: String,
    pub starts: u32,
    /// The archive key's fingerprint (`keys/archive.sec.asc` is the auditor's secret key).
    pub archive_fpr: String,
    /// `[store]` of the config: empty for the embedded SQLite file.
    store_section: String,
    /// The throw-away PostgreSQL database of a world on PostgreSQL (dropped after the daemon).
    _pg: Option<paygate::store::scratch::Scratch>,
}

/// Which store a world's daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

fn generate_key(keys: &Path, name: &str, userid: &str) -> String {
    let mut kg = Command::new(env!("CARGO_BIN_EXE_paygate"));
    kg.args(["keys", "generate", "--userid", userid, "--dir"])
        .arg(keys)
        .args(["--name", name]);
    let o = output_within(kg, 60, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("fingerprint "))
        .unwrap()
        .to_string()
}

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
}

impl World {
    pub fn new(name: &str, wire: Wire, sim_rules: &str) -> World {
        World::on(name, wire, sim_rules, Db::Sqlite).expect("a world on SQLite")
    }

    /// A world whose store is `db`. `None` when it is PostgreSQL and no server can be reached
    /// outside CI (said loudly on stderr by `Scratch::create`).
    pub fn on(name: &str, wire: Wire, sim_rules: &str, db: Db) -> Option<World> {
        let pg = match db {
            Db::Sqlite => None,
            Db::Postgres => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                Some(
                    rt.block_on(paygate::store::scratch::Scratch::create(&format!(
                        "the daemon test `{name}`"
                    )))?,
                )
            }
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!("pg-d-{name}-"))
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tmp.path().to_path_buf();
        // Other OS users (the test's second user) read the config and reach the socket.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let cfpr = generate_key(&keys, "company", "Acme Treasury <treasury@acme.example>");
        let bfpr = generate_key(&keys, "bank", "Bank H2H <h2h@bank.example>");
        let archive_fpr = generate_key(&keys, "archive", "Acme Audit Archive <audit@acme.example>");
        let (transport, sshd, bank_in, bank_out) = match wire {
            Wire::Sftp => {
                let identity = keys.join("id_ed25519");
                ssh_keygen(&identity);
                let authorized = dir.join("authorized_keys");
                std::fs::copy(identity.with_extension("pub"), &authorized).unwrap();
                let sshd = Sshd::new(&dir.join("sshd"), &authorized);
                let hk: Vec<String> = sshd
                    .host_public_key()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                std::fs::write(
                    keys.join("known_hosts"),
                    format!("[127.0.0.1]:{} {} {}\n", sshd.port, hk[0], hk[1]),
                )
                .unwrap();
                let user = String::from_utf8_lossy(
                    &Command::new("id").arg("-un").output().unwrap().stdout,
                )
                .trim()
                .to_string();
                let t = format!(
                    "type = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{user}\"\nidentity = \"keys/id_ed25519\"\nknown_hosts = \"keys/known_hosts\"\nupload_dir = \"{in_}\"\ndownload_dir = \"{out}\"\nremote_name = \"{{company}}_{{msgid}}.xml.pgp\"\ntimeout_secs = 10\nattempts = 4\nbackoff_ms = 200\n",
                    sshd.port,
                    in_ = sshd.root.join("in").display(),
                    out = sshd.root.join("out").display(),
                );
                let (i, o) = (sshd.root.join("in"), sshd.root.join("out"));
                (t, Some(sshd), i, o)
            }
            Wire::Folder => {
                let (i, o) = (dir.join("bank/in"), dir.join("bank/out"));
                std::fs::create_dir_all(&i).unwrap();
                std::fs::create_dir_all(&o).unwrap();
                let t = format!(
                    "type = \"folder\"\nupload_dir = \"{}\"\ndownload_dir = \"{}\"\nremote_name = \"{{company}}_{{msgid}}.xml.pgp\"\nattempts = 3\nbackoff_ms = 100\n",
                    i.display(),
                    o.display()
                );
                (t, None, i, o)
            }
        };
        let sim_state = dir.join("bank/state");
        let sim_config = dir.join("sim.toml");
        std::fs::write(
            &sim_config,
            format!(
                "inbox = \"{}\"\noutbox = \"{}\"\nstate_dir = \"{}\"\nseed = 11\ndelay_ms = 300\n\n[keys]\nbank_secret_key = \"{k}/bank.sec.asc\"\nbank_fingerprint = \"{bfpr}\"\ncompany_cert = \"{k}/company.pub.asc\"\ncompany_fingerprint = \"{cfpr}\"\n\n[rules]\n{sim_rules}\n",
                bank_in.display(),
                bank_out.display(),
                sim_state.display(),
                k = keys.display(),
            ),
        )
        .unwrap();
        let w = World {
            config: dir.join("paygate.toml"),
            daemon_log: dir.join("daemon.log"),
            sim_config,
            sim_state,
            keys,
            daemon: None,
            sim: None,
            _sshd: sshd,
            transport,
            extra_channels: String::new(),
            starts: 0,
            archive_fpr,
            dir,
            _tmp: tmp,
            store_section: pg
                .as_ref()
                .map(|p| format!("[store]\nurl = \"{}\"\n", p.url()))
                .unwrap_or_default(),
            _pg: pg,
        };
        w.write_config(&cfpr, &bfpr);
        let mut w = w;
        w.grant_standing_roles();
        Some(w)
    }

    /// Points the config at another store (`[store] url`), as an admin does after
    /// `paygate store migrate-to`.
    pub fn set_store_url(&mut self, url: &str) {
        self.store_section = format!("[store]\nurl = \"{url}\"\n");
        let (c, b) = self.fingerprints();
        self.write_config(&c, &b);
    }

    /// The port of the bank's sshd (a world on SFTP).
    pub fn sshd_port(&self) -> Option<u16> {
        self._sshd.as_ref().map(|s| s.port)
    }

    /// The bank's upload folder on its sshd (a world on SFTP).
    pub fn bank_inbox(&self) -> Option<PathBuf> {
        self._sshd.as_ref().map(|s| s.root.join("in"))
    }

    /// The PostgreSQL database of a world on PostgreSQL.
    pub fn store_url(&self) -> Option<String> {
        self._pg.as_ref().map(|p| p.url().to_string())
    }

    /// The OS user running the tests: the config's bootstrap admin.
    pub fn me() -> String {
        String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_string()
    }

    /// The roles the standing channels need, granted through the CLI by the bootstrap admin
    /// (this test's user) on a daemon started for that: `pg-files` (the channels' configured
    /// submitter, a system identity) submits everywhere; `nobody` approves everywhere.
    pub fn grant_standing_roles(&mut self) {
        let fresh = self.daemon.is_none();
        if fresh {
            self.start_daemon();
        }
        for args in [
            &[
                "users",
                "add",
                "pg-files",
                "--system",
                "--reason",
                "the test's files",
            ][..],
            &[
                "users",
                "grant",
                "pg-files",
                "submitter",
                "--channel",
                "*",
                "--reason",
                "files",
            ],
            &["users", "add", "nobody", "--reason", "the test's approver"],
            &[
                "users",
                "grant",
                "nobody",
                "approver",
                "--channel",
                "*",
                "--reason",
                "approves",
            ],
        ] {
            let (code, out) = self.paygate(args);
            assert_eq!(code, 0, "paygate {args:?}: {out}");
        }
        if fresh {
            self.signal_daemon(libc::SIGTERM);
            assert_eq!(self.wait_daemon(30), 0, "{}", self.log());
            self.starts = 0;
        }
    }

    /// The company key's and the bank key's pinned fingerprints, as the config has them.
    pub fn fingerprints(&self) -> (String, String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let grab = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split('"').nth(1))
                .unwrap()
                .to_string()
        };
        (grab("fingerprint ="), grab("fingerprints = ["))
    }

    /// Adds TOML to the end of the config (e.g. another channel) and rewrites it.
    pub fn add_config(&mut self, toml: &str) {
        let (c, b) = self.fingerprints();
        self.extra_channels.push_str(toml);
        self.write_config(&c, &b);
    }

    fn write_config(&self, cfpr: &str, bfpr: &str) {
        std::fs::write(
            &self.config,
            format!(
                r#"[paygate]
data_dir = "data"
workers = 2
drain_secs = 15
admin = "{me}"

[company]
name = "Acme (Shanghai) Trading Co., Ltd."
country = "CN"
short_name = "ACME"

[company.pgp]
secret_key = "keys/company.sec.asc"
fingerprint = "{cfpr}"

[archive]
cert = "keys/archive.pub.asc"
fingerprint = "{afpr}"

[company.accounts.payroll-cny]
number = "1001244309300012345"
cnaps = "102290024433"
currency = "CNY"

[company.accounts.eur]
iban = "DE89370400440532013000"
bic = "COBADEFFXXX"
currency = "EUR"

[banks.bank]
name = "Test bank"
format = "pain.001.001.09"
currencies = ["EUR", "USD", "GBP", "CHF", "JPY", "CNY"]
charset = "utf8"
domestic_account_digits = [9, 25]
domestic_bank_code = "cnaps"
poll_secs = 1

[banks.bank.pgp]
keys = ["keys/bank.pub.asc"]
fingerprints = ["{bfpr}"]

[banks.bank.transport]
{transport}
[channels.payroll]
kind = "payroll"
bank = "bank"
debtor_account = "payroll-cny"
folder = "channels/payroll"
sheet = "Payroll"
scan_secs = 1
stable_secs = 1
submitter = "pg-files"

[channels.payroll.approval]
required = 1

[channels.payroll.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
outlier_factor = "0"

[channels.supplier]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "channels/supplier"
scan_secs = 1
stable_secs = 4
submitter = "pg-files"

[channels.supplier.approval]
auto_below = {{ EUR = "1000000", USD = "1000000", GBP = "1000000", CHF = "1000000", JPY = "150000000" }}

[channels.supplier.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
outlier_factor = "0"
{extra}
{store}"#,
                transport = self.transport,
                extra = self.extra_channels,
                store = self.store_section,
                afpr = self.archive_fpr,
                me = World::me(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    pub fn folder(&self, channel: &str, sub: &str) -> PathBuf {
        self.dir.join("channels").join(channel).join(sub)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("data/paygate.sock")
    }

    /// Starts `paygate run`; returns once its control socket answers.
    pub fn start_daemon(&mut self) {
        assert!(self.daemon.is_none());
        self.daemon = Some(spawn_run(&self.config, &self.daemon_log, "info", &[]));
        self.starts += 1;
        let sock = self.socket();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                return;
            }
            if let Some(c) = self.daemon.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("paygate run exited ({st}) at start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "paygate run did not open its socket within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `paygate run` without waiting for anything (the crash test).
    pub fn spawn_daemon(&mut self) {
        self.spawn_daemon_env(&[]);
    }

    /// `spawn_daemon` with extra environment (the crash points).
    pub fn spawn_daemon_env(&mut self, env: &[(&str, &str)]) {
        assert!(self.daemon.is_none());
        self.daemon = Some(spawn_run(&self.config, &self.daemon_log, "warn", env));
        self.starts += 1;
    }

    /// SIGKILL: no chance to clean up, as in a power cut.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: a process this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    pub fn signal_daemon(&self, sig: i32) {
        let c = self.daemon.as_ref().expect("daemon running");
        // SAFETY: a process this test started.
        unsafe {
            libc::kill(c.id() as i32, sig);
        }
    }

    /// Waits for the daemon to exit; returns its exit code.
    pub fn wait_daemon(&mut self, secs: u64) -> i32 {
        let mut c = self.daemon.take().expect("daemon running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("paygate run did not exit within {secs} s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `secs` for the daemon to die by itself; true when it was killed by SIGKILL
    /// (a crash point fired). Kills it otherwise.
    pub fn wait_for_crash(&mut self, secs: u64) -> bool {
        let mut c = self.daemon.take().expect("daemon running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                use std::os::unix::process::ExitStatusExt;
                return st.signal() == Some(libc::SIGKILL);
            }
            if Instant::now() > deadline {
                // SAFETY: a process this test started.
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGKILL);
                }
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn daemon_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn start_sim(&mut self) {
        let log = std::fs::File::create(self.dir.join("sim.log")).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_paygate"))
            .arg("bank-sim")
            .arg(&self.sim_config)
            .args(["--tick-ms", "50"])
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start paygate bank-sim");
        self.sim = Some(child);
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.daemon_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn paygate(&self, args: &[&str]) -> (i32, String) {
        harness::run_paygate(&self.config, args)
    }

    /// Batches as `paygate batches --json` shows them: (id, file name, state, payments).
    pub fn batches(&self) -> Vec<Batch> {
        let (code, out) = self.paygate(&["batches", "--json"]);
        assert_eq!(code, 0, "{out}");
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| Batch {
                id: b["id"].as_i64().unwrap(),
                channel: b["channel"].as_str().unwrap().into(),
                file: b["file_name"].as_str().unwrap().into(),
                state: b["state"].as_str().unwrap().into(),
                msg_id: b["msg_id"].as_str().unwrap_or_default().into(),
                payments: b["payment_count"].as_i64().unwrap(),
                by_state: b["by_state"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_i64().unwrap()))
                    .collect(),
            })
            .collect()
    }

    /// Waits until `cond` holds for the batches.
    pub fn wait_batches(
        &self,
        what: &str,
        secs: u64,
        cond: impl Fn(&[Batch]) -> bool,
    ) -> Vec<Batch> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.batches();
            if cond(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}; batches: {b:#?}\ndaemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Copies a file into a channel's inbound folder the way a careful program does (written
    /// beside, then moved in).
    pub fn drop_file(&self, channel: &str, name: &str, bytes: &[u8]) -> PathBuf {
        let inbound = self.folder(channel, "inbound");
        std::fs::create_dir_all(&inbound).unwrap();
        let tmp = inbound.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        let to = inbound.join(name);
        std::fs::rename(&tmp, &to).unwrap();
        to
    }

    pub fn wait_file(&self, path: &Path, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {}; daemon log:\n{}",
                path.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub id: i64,
    pub channel: String,
    pub file: String,
    pub state: String,
    pub msg_id: String,
    pub payments: i64,
    pub by_state: Vec<(String, i64)>,
}

impl Batch {
    /// Nothing more will happen: refused, or every payment has the bank's final word.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state.as_str(),
            "completed" | "partially_rejected" | "rejected" | "invalid" | "declined" | "expired"
        ) && self
            .by_state
            .iter()
            .all(|(s, _)| matches!(s.as_str(), "settled" | "rejected" | "returned"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_daemon();
        if let Some(mut c) = self.sim.take() {
            // SAFETY: a process this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

/// One more `paygate run` beside the world's own: the world's config with its own data folder
/// (and so its own control socket, spool, outbox and audit anchor).
pub struct Peer {
    pub config: PathBuf,
    pub log: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Peer {
    pub fn new(w: &World, name: &str) -> Peer {
        let text = std::fs::read_to_string(&w.config).unwrap().replace(
            "data_dir = \"data\"",
            &format!("data_dir = \"data-{name}\""),
        );
        let config = w.dir.join(format!("paygate-{name}.toml"));
        std::fs::write(&config, text).unwrap();
        // The data key is the store's: every instance holds the same key file, as an admin
        // installs it on every host.
        let keys = w.dir.join(format!("data-{name}/keys"));
        paygate::durable::create_private_dir(&keys).unwrap();
        std::fs::copy(w.dir.join("data/keys/data.key"), keys.join("data.key")).unwrap();
        Peer {
            config,
            log: w.dir.join(format!("daemon-{name}.log")),
            socket: w.dir.join(format!("data-{name}/paygate.sock")),
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        self.child = Some(spawn_run(&self.config, &self.log, "warn", &[]));
    }

    /// `spawn` on a test host of its own (the network namespace `netns`).
    pub fn spawn_on(&mut self, netns: &str) {
        assert!(self.child.is_none());
        self.child = Some(spawn_run_on(
            Some(netns),
            &self.config,
            &self.log,
            "info",
            &[],
        ));
    }

    /// Waits up to `secs` for the instance to exit by itself; its exit code.
    pub fn exit_within(&mut self, secs: u64) -> i32 {
        let c = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("the instance did not exit within {secs} s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: a process this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `paygate run` with `config`, logging at `level` (appended to `log`), in a process group of
/// its own; `env`: more environment (the crash points).
pub fn spawn_run(config: &Path, log: &Path, level: &str, env: &[(&str, &str)]) -> Child {
    spawn_run_on(None, config, log, level, env)
}

/// `spawn_run` on a test host of its own: inside the network namespace `netns` (`ip netns
/// exec` becomes the process itself, so its PID is paygate's).
pub fn spawn_run_on(
    netns: Option<&str>,
    config: &Path,
    log: &Path,
    level: &str,
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    use std::os::unix::process::CommandExt;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new(require("ip", "iproute2"));
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_paygate")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_paygate")),
    };
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env("RUST_BACKTRACE", "0")
        .env("PAYGATE_LOG", level)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start paygate run")
}

/// Which instances started and which resumed a batch's upload, from its audit trail: two
/// instances, one after the other (each named `i<16 hex>`). Returns (started, resumed).
pub fn upload_takeover(w: &World, batch: i64) -> (String, String) {
    let (code, audit) = w.paygate(&["audit", "--batch", &batch.to_string()]);
    assert_eq!(code, 0, "{audit}");
    let instance_of = |action: &str| -> String {
        let line = audit
            .lines()
            .find(|l| l.contains(action))
            .unwrap_or_else(|| panic!("no {action} in:\n{audit}"));
        line.split("instance=")
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let (started, resumed) = (
        instance_of("batch.upload_started"),
        instance_of("batch.upload_resumed"),
    );
    assert!(
        started.starts_with('i') && resumed.starts_with('i') && started != resumed,
        "{audit}"
    );
    (started, resumed)
}

/// A supplier CSV of `rows` payments made from the rows of `samples/supplier.csv` (taken in
/// turn), each changed by `edit(row index, columns)`.
pub fn supplier_csv(rows: usize, edit: impl Fn(usize, &mut [String])) -> String {
    let text = std::fs::read_to_string(sample("supplier.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = format!("{}\n", lines[0]);
    for i in 0..rows {
        let mut cols: Vec<String> = lines[1 + i % (lines.len() - 1)]
            .split(';')
            .map(str::to_string)
            .collect();
        edit(i, &mut cols);
        out.push_str(&cols.join(";"));
        out.push('\n');
    }
    out
}

/// The bank's side of a run: every file it received was accepted, each MsgId arrived with one
/// content however often it was resent, and the MsgIds are exactly `msg_ids`. Returns how many
/// files arrived.
pub fn assert_each_msg_id_arrived_with_one_content(
    w: &World,
    msg_ids: &std::collections::BTreeSet<&str>,
) -> usize {
    let received = paygate::banksim::received(&w.sim_state);
    let mut by_msg: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in &received {
        assert!(
            !r.verdict.starts_with("refused"),
            "the bank refused a file: {r:?}"
        );
        by_msg
            .entry(r.msg_id.clone())
            .or_default()
            .push(r.plain_sha256.clone());
    }
    for (m, shas) in &by_msg {
        assert!(
            shas.iter().all(|s| s == &shas[0]),
            "MsgId {m} arrived with different contents: {shas:?}"
        );
    }
    let got: std::collections::BTreeSet<&str> = by_msg.keys().map(String::as_str).collect();
    assert_eq!(msg_ids, &got, "the bank got exactly the batches' MsgIds");
    received.len()
}

/// GnuPG as the bank's integration engineer uses it: the bank's secret key imported, the
/// company's certificate known.
pub fn gpg_decrypt(keys: &Path, file: &Path) -> (Vec<u8>, String) {
    gpg_decrypt_as(keys, "bank", file)
}

/// GnuPG with `NAME.sec.asc` imported (e.g. the auditor's archive key).
pub fn gpg_decrypt_as(keys: &Path, name: &str, file: &Path) -> (Vec<u8>, String) {
    let home = tempfile::tempdir().unwrap();
    let gpg = require("gpg", "gnupg");
    let run = |args: &[&str]| {
        let mut c = Command::new(&gpg);
        c.env("GNUPGHOME", home.path())
            .args(["--batch", "--no-tty", "--trust-model", "always"])
            .args(args);
        output_within(c, 60, None)
    };
    for k in [format!("{name}.sec.asc"), "company.pub.asc".to_string()] {
        let o = run(&["--import", keys.join(&k).to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = run(&["--status-fd", "2", "-d", file.to_str().unwrap()]);
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home.path())
        .args(["--kill", "all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    (o.stdout, String::from_utf8_lossy(&o.stderr).into_owned())
}
