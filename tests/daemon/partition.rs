//! An instance on a test host of its own, cut off from PostgreSQL in the middle of an upload.
//!
//! Host `a` is a network namespace made here. It reaches PostgreSQL only over a veth link to
//! a second namespace, the gateway, where a relay made by this test forwards to the server on
//! 127.0.0.1:5432; it reaches the bank's sshd through a relay on its own loopback. Cutting the
//! link partitions `a` from the store the way a switch failure does: packets vanish, nothing is
//! refused. Nothing listens outside 127.0.0.1 and the namespaces made here, and everything
//! made is removed at the end (the relays stop, the namespaces and their links are deleted).

use crate::harness::{self, require};
use crate::world::{Db, Peer, Wire, World, supplier_csv};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Two test hosts joined by a veth link: `a` (10.77.0.2) and the gateway `gw` (10.77.0.1).
struct Hosts {
    a: String,
    gw: String,
}

impl Hosts {
    /// `None` (said loudly) where namespaces cannot be made, outside CI; under CI a failure.
    fn create() -> Option<Hosts> {
        let ip = require("ip", "iproute2");
        let id = std::process::id();
        let hosts = Hosts {
            a: format!("pg-a-{id}"),
            gw: format!("pg-gw-{id}"),
        };
        let (va, vg) = (format!("pgva{id}"), format!("pgvg{id}"));
        let run = |args: &[&str]| -> Result<(), String> {
            let out = harness::output_within(
                {
                    let mut c = Command::new(&ip);
                    c.args(args);
                    c
                },
                30,
                None,
            );
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        if let Err(e) = run(&["netns", "add", &hosts.a]) {
            let why = format!(
                "cannot make a network namespace here ({e}); it needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2"
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}");
            }
            eprintln!(
                "\n=====================================================================\n\
                 SKIPPED the network-partition test: {why}.\n\
                 Run the test command as root (as CI does) to run it.\n\
                 =====================================================================\n"
            );
            return None;
        }
        let made = (|| {
            run(&["netns", "add", &hosts.gw])?;
            run(&["link", "add", &va, "type", "veth", "peer", "name", &vg])?;
            run(&["link", "set", &va, "netns", &hosts.a])?;
            run(&["link", "set", &vg, "netns", &hosts.gw])?;
            run(&["-n", &hosts.a, "addr", "add", "10.77.0.2/30", "dev", &va])?;
            run(&["-n", &hosts.gw, "addr", "add", "10.77.0.1/30", "dev", &vg])?;
            for (ns, dev) in [(&hosts.a, &va), (&hosts.gw, &vg)] {
                run(&["-n", ns, "link", "set", "lo", "up"])?;
                run(&["-n", ns, "link", "set", dev, "up"])?;
            }
            Ok::<(), String>(())
        })();
        if let Err(e) = made {
            panic!("making the test hosts: {e}");
        }
        Some(hosts)
    }

    /// The switch fails: the gateway's end of the link goes down, and what `a` sends to the
    /// store vanishes.
    fn cut(&self) {
        let dev = format!("pgvg{}", std::process::id());
        let mut c = Command::new(require("ip", "iproute2"));
        c.args(["-n", &self.gw, "link", "set", &dev, "down"]);
        let out = harness::output_within(c, 30, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for ns in [&self.a, &self.gw] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A TCP relay listening inside a namespace (bound by a thread that entered it), forwarding
/// each connection to `to` in this test's own namespace. With `hold_after`, a connection whose
/// client has sent that many bytes (an upload: a poll sends a few kilobytes) stops passing
/// the client's bytes (it stays open) until `resume`.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    hold: Arc<Hold>,
    accept: Option<std::thread::JoinHandle<()>>,
}

struct Hold {
    after: u64,
    held: AtomicBool,
    resumed: AtomicBool,
}

impl Hold {
    /// How many more client bytes may pass on a connection that passed `passed`.
    fn allowance(&self, passed: u64) -> u64 {
        if self.resumed.load(Ordering::SeqCst) {
            return u64::MAX;
        }
        let left = self.after.saturating_sub(passed);
        if left == 0 {
            self.held.store(true, Ordering::SeqCst);
        }
        left
    }
}

impl Relay {
    fn start(netns: &str, ip: &str, to: SocketAddr, hold_after: Option<u64>) -> Relay {
        let (ns, ip) = (netns.to_string(), ip.to_string());
        let listener = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only (a thread of its own, ending after the bind).
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            TcpListener::bind(format!("{ip}:0")).expect("bind the relay")
        })
        .join()
        .unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(Hold {
            after: hold_after.unwrap_or(u64::MAX),
            held: AtomicBool::new(false),
            resumed: AtomicBool::new(false),
        });
        let (s, h) = (stop.clone(), hold.clone());
        // Started from this (the test's) namespace: connections to `to` are made here.
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(5))
                        else {
                            continue;
                        };
                        client.set_nonblocking(false).unwrap();
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            Some(h.clone()),
                            s.clone(),
                        );
                        pump(server, client, None, s.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Relay {
            port,
            stop,
            hold,
            accept: Some(accept),
        }
    }

    /// A connection's client bytes are being held (it reached the threshold).
    fn holding(&self) -> bool {
        self.hold.held.load(Ordering::SeqCst)
    }

    fn resume(&self) {
        self.hold.resumed.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes or the relay stops;
/// with `hold`, counting the bytes and passing only what the hold allows.
fn pump(mut from: TcpStream, mut to: TcpStream, hold: Option<Arc<Hold>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        from.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut passed = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let want = match &hold {
                Some(h) => h.allowance(passed).min(buf.len() as u64) as usize,
                None => buf.len(),
            };
            if want == 0 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            match from.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    passed += n as u64;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A supplier file of `rows` payments of 1.00 EUR, each with a remittance line of its own (so
/// that the sealed file does not compress away).
fn big_file(rows: usize) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise = std::cell::RefCell::new(move || {
        let mut n = String::new();
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            n.push_str(&format!("{x:016X}"));
        }
        n
    });
    supplier_csv(rows, |i, cols| {
        cols[4] = "1.00".into();
        cols[5] = "EUR".into();
        cols[6] = format!("INV {i} {}", (noise.borrow_mut())());
        cols[7] = format!("P-{i:05}");
    })
}

/// Instance `a` records an upload's start and is in the middle of sending the file when its
/// link to PostgreSQL fails. Its lease cannot be renewed: it stops claiming work, stops the
/// upload before its lease runs out in the store (the bank's link works all along, and is
/// given back the moment the lease has run out: an instance that went on would commit the
/// file then), and exits with an error. Instance `b` takes the batch over once the lease has
/// run out and sends the same file; a file dropped after the cut is processed by `b`. The
/// bank gets each MsgId once, `a` never renamed a file on its server, and the audit chain
/// names both instances and verifies.
#[test]
fn an_instance_cut_off_from_postgres_mid_upload_stops_before_its_lease_ends() {
    let Some(hosts) = Hosts::create() else {
        return;
    };
    let Some(mut w) = World::on("partition", Wire::Sftp, "", Db::Postgres) else {
        return;
    };
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("[store]\n", "[store]\nlease_secs = 3\n");
    std::fs::write(&w.config, &text).unwrap();
    w.start_sim();
    // The first start makes the data key; b is given the same key file.
    w.start_daemon();
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(60), 0, "{}", w.log());
    let mut b = Peer::new(&w, "b");

    // Host a: the store through the gateway, the bank through its own loopback.
    let url = w.store_url().unwrap();
    let pg: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let pg_relay = Relay::start(&hosts.gw, "10.77.0.1", pg, None);
    let sshd_port = w.sshd_port().unwrap();
    const HOLD_AFTER: u64 = 64 * 1024;
    let bank_relay = Relay::start(
        &hosts.a,
        "127.0.0.1",
        SocketAddr::from(([127, 0, 0, 1], sshd_port)),
        Some(HOLD_AFTER),
    );
    let a_url = url.replace("127.0.0.1:5432", &format!("10.77.0.1:{}", pg_relay.port));
    assert_ne!(a_url, url, "the store URL names 127.0.0.1:5432: {url}");
    let mut a = Peer::new(&w, "a");
    let a_text = std::fs::read_to_string(&a.config).unwrap();
    std::fs::write(
        &a.config,
        a_text.replace(&url, &a_url).replace(
            &format!("port = {sshd_port}\n"),
            &format!("port = {}\n", bank_relay.port),
        ),
    )
    .unwrap();
    let known = w.keys.join("known_hosts");
    let line = std::fs::read_to_string(&known).unwrap();
    let relayed = line.replace(
        &format!("[127.0.0.1]:{sshd_port}"),
        &format!("[127.0.0.1]:{}", bank_relay.port),
    );
    std::fs::write(&known, format!("{line}{relayed}")).unwrap();
    a.spawn_on(&hosts.a);

    // Mid-upload: the batch recorded as uploading, its bytes flowing to the bank.
    w.drop_file("supplier", "big.csv", big_file(3_000).as_bytes());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !bank_relay.holding() {
        assert!(
            Instant::now() < deadline,
            "a never got {HOLD_AFTER} bytes into its upload:\n{}",
            a.log()
        );
        assert!(a.running(), "a stopped:\n{}", a.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let batches = w.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].state, "uploading", "{batches:?}");
    let sealed = std::fs::read_dir(w.dir.join("data-a/outbox"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.metadata().unwrap().len())
        .max()
        .expect("a's sealed file in its outbox");
    assert!(
        sealed > HOLD_AFTER + 128 * 1024,
        "the sealed file ({sealed} bytes) must be well over what passes before the hold"
    );

    hosts.cut();
    let cut = Instant::now();
    w.drop_file("supplier", "after-cut.csv", big_file(3).as_bytes());
    // The lease runs out in the store (read from this host, which still reaches it): then the
    // bank's link is given back to a.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(paygate::store::Store::open(&url))
        .expect("the store");
    let deadline = Instant::now() + Duration::from_secs(30);
    let a_id = loop {
        let rows = rt.block_on(store.instances(1)).unwrap();
        if let Some(dead) = rows.iter().find(|i| !i.alive && i.stopped_at.is_none()) {
            break dead.id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "a's lease did not run out in the store: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    rt.block_on(store.close());
    assert!(
        cut.elapsed() >= Duration::from_secs(2),
        "a's lease ran out {:?} after the cut, before the 3 s lease could",
        cut.elapsed()
    );
    bank_relay.resume();
    let code = a.exit_within(30);
    let log = a.log();
    assert_ne!(code, 0, "a must exit with an error:\n{log}");
    assert!(log.contains("instance.lease_lost"), "{log}");
    // a wrote part of the file on the bank's server and renamed nothing.
    let inbox = w.bank_inbox().unwrap();
    let names: Vec<String> = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.ends_with(".part")),
        "a committed a file after it lost its lease: {names:?}"
    );
    assert!(
        paygate::banksim::received(&w.sim_state).is_empty(),
        "the bank received a file from a"
    );
    assert!(
        log.contains("no longer holds it"),
        "a's upload was stopped by its fence:\n{log}"
    );

    // b takes over: the batch a was sending, and the file dropped after the cut.
    b.spawn();
    let done = w.wait_batches("b to finish both batches", 120, |bs| {
        bs.len() == 2 && bs.iter().all(|x| x.is_final())
    });
    let big = done.iter().find(|x| x.file == "big.csv").unwrap();
    assert_eq!(big.payments, 3_000);
    let (started_by, _) = crate::world::upload_takeover(&w, big.id);
    assert_eq!(started_by, a_id, "a started the upload");
    let msg_ids = done.iter().map(|x| x.msg_id.as_str()).collect();
    let received = crate::world::assert_each_msg_id_arrived_with_one_content(&w, &msg_ids);
    assert_eq!(received, 2, "each file reached the bank once");
    let (code, out) = harness::run_paygate(&b.config, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    b.kill();
    drop(bank_relay);
    drop(pg_relay);
}
