//! Several instances on one PostgreSQL store: separate processes with separate data folders,
//! sharing the channel folders, the bank's folders and the database, killed with SIGKILL at
//! random moments and started again.

use crate::harness;
use crate::world::{Db, Peer, Wire, World};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A batch waiting for approval is approved by nobody (not its submitter), through whichever
/// instance answers on its socket.
fn approve_all(w: &World, configs: &[&Path]) {
    for b in w.batches() {
        if b.state != "awaiting_approval" {
            continue;
        }
        for config in configs {
            let mut c = Command::new(harness::require("setpriv", "util-linux"));
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_paygate"))
                .arg("--config")
                .arg(config)
                .args(["approve", &b.id.to_string()]);
            if harness::output_within(c, 60, None).status.success() {
                break;
            }
        }
    }
}

/// Lets nobody (the approver) reach an instance's socket.
fn open_socket(dir: &Path, socket: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666));
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

/// Three instances over 500 files (every fifth waiting for an approval), each killed with
/// SIGKILL at random moments — sometimes all at once — and started again. First a takeover on
/// purpose: A dies right after recording an upload's start, and B continues that batch once
/// A's lease has run out. At the end every batch is final; each MsgId reached the bank with one
/// content however often it was resent (a step an instance died in is continued by another once
/// its lease runs out); no file was processed twice and no payment counted twice; every return
/// was applied once; the one audit chain verifies from every instance; `paygate status` lists
/// the live instances and the dead ones.
#[test]
fn three_instances_killed_at_random_lose_nothing_and_send_nothing_twice() {
    const FILES: usize = 500;
    let Some(mut w) = World::on(
        "instances",
        Wire::Folder,
        "reject_per_mille = 100",
        Db::Postgres,
    ) else {
        return;
    };
    // Short leases: a dead instance's work is taken over within seconds.
    let text = std::fs::read_to_string(&w.config)
        .unwrap()
        .replace("[store]\n", "[store]\nlease_secs = 3\n");
    std::fs::write(&w.config, &text).unwrap();
    w.start_sim();
    // The first start creates the data key; the peer is given the same key file.
    w.start_daemon();
    w.kill_daemon();
    let mut b = Peer::new(&w, "b");
    let mut c = Peer::new(&w, "c");
    let make = |i: usize| -> (String, usize) {
        let rows = 3 + i % 4;
        let text = crate::world::supplier_csv(rows, |r, cols| {
            cols[7] = format!("M{i:03}-{r}");
            if i.is_multiple_of(5) && r == 0 {
                cols[4] = "1500000.00".into();
                cols[5] = "EUR".into();
            }
        });
        (text, rows)
    };
    let (mut dropped, mut rows_total, mut kills) = (0usize, 0usize, 0u32);
    let started = Instant::now();
    // Takeover, deterministically first: A dies holding the claim of a batch whose upload it
    // recorded; B takes the batch over once A's lease has run out and sends the same file.
    let (text, rows) = make(1);
    w.drop_file("supplier", "m-001.csv", text.as_bytes());
    (dropped, rows_total) = (dropped + 1, rows_total + rows);
    w.spawn_daemon_env(&[
        ("PAYGATE_CRASH_POINTS", "upload-started"),
        ("PAYGATE_CRASH_PERCENT", "100"),
    ]);
    assert!(
        w.wait_for_crash(60),
        "A never reached upload-started:\n{}",
        w.log()
    );
    kills += 1;
    let died = Instant::now();
    b.spawn();
    let first = w.wait_batches("B to finish the batch A died sending", 60, |bs| {
        bs.len() == 1 && bs[0].is_final()
    });
    assert!(
        died.elapsed() >= Duration::from_secs(2),
        "B took the batch before A's lease (3 s) ran out"
    );
    crate::world::upload_takeover(&w, first[0].id);
    b.kill();
    kills += 1;
    // Then all three, killed at random moments.
    let mut rng = super::Lcg(20261204);
    w.spawn_daemon();
    b.spawn();
    c.spawn();
    while dropped < FILES || kills < 60 {
        for _ in 0..rng.next(12) {
            if dropped < FILES {
                let (text, rows) = make(dropped + 1);
                w.drop_file(
                    "supplier",
                    &format!("m-{:03}.csv", dropped + 1),
                    text.as_bytes(),
                );
                dropped += 1;
                rows_total += rows;
            }
        }
        std::thread::sleep(Duration::from_millis(200 + rng.next(1500)));
        match rng.next(7) {
            0 => {
                w.kill_daemon();
                b.kill();
                c.kill();
                kills += 3;
            }
            1 | 2 => {
                w.kill_daemon();
                kills += 1;
            }
            3 | 4 => {
                b.kill();
                kills += 1;
            }
            _ => {
                c.kill();
                kills += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(rng.next(800)));
        if !w.daemon_running() {
            w.spawn_daemon();
        }
        for p in [&mut b, &mut c] {
            if !p.running() {
                p.spawn();
            }
        }
    }
    // Calm: all run, approvals come in.
    w.kill_daemon();
    b.kill();
    c.kill();
    w.start_daemon();
    b.spawn();
    c.spawn();
    for p in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&p.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "a peer did not start:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    open_socket(&w.dir.join("data"), &w.socket());
    open_socket(&w.dir.join("data-b"), &b.socket);
    open_socket(&w.dir.join("data-c"), &c.socket);
    let deadline = Instant::now() + Duration::from_secs(600);
    let batches = loop {
        approve_all(&w, &[&w.config, &b.config, &c.config]);
        let bs = w.batches();
        if bs.len() == dropped && bs.iter().all(|x| x.is_final()) {
            break bs;
        }
        assert!(
            Instant::now() < deadline,
            "not every batch is final: {} of {dropped} batches, {} final\nA:\n{}\nB:\n{}\nC:\n{}",
            bs.len(),
            bs.iter().filter(|x| x.is_final()).count(),
            w.log(),
            b.log(),
            c.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // No file lost or processed twice.
    for sub in ["inbound", "processing"] {
        let left: Vec<_> = std::fs::read_dir(w.folder("supplier", sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left in {sub}/: {left:?}");
    }
    let archived = std::fs::read_dir(w.folder("supplier", "archive"))
        .unwrap()
        .count();
    assert_eq!(archived, dropped, "every accepted file archived once");
    // No payment counted twice.
    let payments: i64 = batches.iter().map(|b| b.payments).sum();
    assert_eq!(payments as usize, rows_total);
    for x in &batches {
        assert_eq!(x.by_state.iter().map(|(_, n)| n).sum::<i64>(), x.payments);
    }
    // Each MsgId reached the bank with one content, whichever instance sent it.
    let msg_ids: std::collections::BTreeSet<&str> =
        batches.iter().map(|b| b.msg_id.as_str()).collect();
    let received = crate::world::assert_each_msg_id_arrived_with_one_content(&w, &msg_ids);
    // One result report (CSV and XLSX) per batch: no return applied twice.
    let results = std::fs::read_dir(w.folder("supplier", "results"))
        .unwrap()
        .count();
    assert_eq!(results, dropped * 2, "a CSV and an XLSX per batch");
    // The one chain verifies from either instance (each with its own anchor).
    for config in [&w.config, &b.config, &c.config] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paygate"));
        cmd.arg("--config").arg(config).args(["audit", "verify"]);
        let out = harness::output_within(cmd, 60, None);
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (code, status) = w.paygate(&["status"]);
    assert_eq!(code, 0, "{status}");
    let alive = status.lines().filter(|l| l.contains(" alive ")).count();
    assert_eq!(alive, 3, "{status}");
    assert!(
        status.contains("DEAD") || status.contains("stopped"),
        "{status}"
    );
    eprintln!(
        "three instances: {dropped} files, {kills} kills, {} uploads for {} batches, {:?}",
        received,
        batches.len(),
        started.elapsed()
    );
}
