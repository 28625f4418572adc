//! `paygate run` (the daemon) and the verbs that talk to it over its control socket:
//! `approve`, `reject`, `readmit`, `status`, `reload`.

use super::{Exit, load_config};
use crate::daemon::control::{self, Request, Response};
use crate::daemon::{self, RunOptions, Status};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Log format on standard error
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Stop after this many seconds (for tests and benchmarks)
    #[arg(long, value_name = "SECS", hide = true)]
    pub stop_after: Option<u64>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// Batch id (see `paygate status`)
    batch: i64,
    #[arg(long)]
    comment: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RejectArgs {
    /// Batch id (see `paygate status`)
    batch: i64,
    /// Why the batch must not be paid (recorded in the audit trail)
    #[arg(long)]
    reason: String,
}

#[derive(clap::Args, Debug)]
pub struct ReadmitArgs {
    /// A file in a channel's rejected/ folder that was refused as a duplicate
    file: PathBuf,
    #[arg(long)]
    reason: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[arg(long)]
    json: bool,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn run(args: RunArgs, config_path: &Path) -> Exit {
    let opts = RunOptions {
        stop_after: args.stop_after.map(std::time::Duration::from_secs),
    };
    let rt = runtime();
    let result = rt.block_on(daemon::run(config_path, opts));
    // Blocking work still running after the drain deadline (an upload, say) is not waited
    // for: it continues from its last recorded state at the next start.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            tracing::error!(error_code = "daemon.start", "{e}");
            eprintln!("paygate: {e}");
            if e.is_setup() {
                Exit::Config
            } else {
                Exit::Usage
            }
        }
    }
}

/// Sends a request to the daemon named by the config's control socket.
pub(super) fn ask(config_path: &Path, req: &Request) -> Result<Response, Exit> {
    let cfg = load_config(config_path)?;
    control::request(&cfg.control_socket(), req).map_err(|e| {
        eprintln!("paygate: {e}");
        Exit::Usage
    })
}

pub(super) fn answer(resp: Response) -> Exit {
    if resp.ok {
        println!("{}", resp.message);
        Exit::Ok
    } else {
        eprintln!("paygate: {}", resp.message);
        Exit::InputErrors
    }
}

pub fn approve(args: ApproveArgs, config_path: &Path) -> Exit {
    match ask(
        config_path,
        &Request::Approve {
            batch: args.batch,
            comment: args.comment,
        },
    ) {
        Ok(r) => answer(r),
        Err(e) => e,
    }
}

pub fn reject(args: RejectArgs, config_path: &Path) -> Exit {
    match ask(
        config_path,
        &Request::Reject {
            batch: args.batch,
            reason: args.reason,
        },
    ) {
        Ok(r) => answer(r),
        Err(e) => e,
    }
}

pub fn readmit(args: ReadmitArgs, config_path: &Path) -> Exit {
    let path = std::fs::canonicalize(&args.file).unwrap_or(args.file);
    match ask(
        config_path,
        &Request::Readmit {
            path: path.display().to_string(),
            reason: args.reason,
        },
    ) {
        Ok(r) => answer(r),
        Err(e) => e,
    }
}

pub fn reload(config_path: &Path) -> Exit {
    match ask(config_path, &Request::Reload) {
        Ok(r) => answer(r),
        Err(e) => e,
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum AlertsCommand {
    /// Acknowledge an alert: it leaves the open list, and the same alert may be sent again
    /// when it happens again (audited)
    Ack { id: i64 },
}

pub fn alerts(cmd: AlertsCommand, config_path: &Path) -> Exit {
    match cmd {
        AlertsCommand::Ack { id } => match ask(config_path, &Request::AlertAck { id }) {
            Ok(r) => answer(r),
            Err(e) => e,
        },
    }
}

pub fn status(args: StatusArgs, config_path: &Path) -> Exit {
    let resp = match ask(config_path, &Request::Status) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !resp.ok {
        return answer(resp);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp.data).unwrap_or_default()
        );
        return Exit::Ok;
    }
    let s: Status = match serde_json::from_value(resp.data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paygate: the daemon's status could not be read: {e}");
            return Exit::Usage;
        }
    };
    print!("{}", render_status(&s));
    Exit::Ok
}

pub fn render_status(s: &Status) -> String {
    let mut o = format!(
        "paygate {} · pid {} · up {} · config {}\n",
        s.version,
        s.pid,
        human_secs(s.uptime_secs),
        s.config
    );
    o.push_str("\nchannels\n");
    for c in &s.channels {
        o.push_str(&format!(
            "  {:<12} bank {:<10} {:<8} inbound {:>3}  processing {:>3}  rejected {:>3}  {}\n",
            c.name, c.bank, c.watch, c.inbound, c.processing, c.rejected, c.folder
        ));
    }
    o.push_str("\ninstances (on this store; * is this one)\n");
    for i in &s.instances {
        let state = match (&i.stopped_at, i.alive) {
            (Some(at), _) => format!("stopped {at}"),
            (None, true) => "alive".to_string(),
            // Its heartbeat stopped and its lease ran out: what it held is anyone's.
            (None, false) => "DEAD (lease expired)".to_string(),
        };
        let mut holds = Vec::new();
        if !i.batches.is_empty() {
            holds.push(format!(
                "batches {}",
                i.batches
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if !i.polls.is_empty() {
            holds.push(format!("polls {}", i.polls.join(",")));
        }
        o.push_str(&format!(
            "  {}{} {:<16} pid {:<7} v{:<8} heartbeat {} ago  {:<22} {}\n",
            if i.id == s.instance { "*" } else { " " },
            i.id,
            i.host,
            i.pid,
            i.version,
            human_secs((i.heartbeat_age_ms.max(0) / 1000) as u64),
            state,
            if holds.is_empty() {
                "holds nothing".to_string()
            } else {
                holds.join("; ")
            }
        ));
    }
    o.push_str("\nbatches\n");
    if s.batches.is_empty() {
        o.push_str("  none yet\n");
    }
    for (state, n) in &s.batches {
        o.push_str(&format!("  {state:<20} {n}\n"));
    }
    o.push_str("\nopen alerts\n");
    if s.alerts.is_empty() {
        o.push_str("  none\n");
    }
    for a in &s.alerts {
        o.push_str(&format!(
            "  #{:<4} {:<8} {:<20} {}{}\n        what to do: {}\n",
            a.id,
            a.severity,
            a.kind,
            a.summary,
            if a.times > 1 {
                format!(" (raised {} times)", a.times)
            } else {
                String::new()
            },
            a.action
        ));
        for p in &a.pending {
            o.push_str(&format!("        not delivered yet: {p}\n"));
        }
    }
    o.push_str("\nwaiting for approval\n");
    o.push_str(&render_pending(&s.pending_approvals));
    o.push_str("\nbanks\n");
    for b in &s.banks {
        o.push_str(&format!(
            "  {:<12} {:<6} encryption {:<8} last contact {}  next poll {}\n",
            b.name,
            b.transport,
            b.encryption,
            b.last_contact.as_deref().unwrap_or("never"),
            b.next_poll.as_deref().unwrap_or("-"),
        ));
        if let Some(e) = &b.last_error {
            o.push_str(&format!("    last error: {e}\n"));
        }
        for w in &b.key_warnings {
            o.push_str(&format!("    WARNING: {w}\n"));
        }
    }
    o
}

/// Batches waiting for approval: what each needs, why, and who may give it.
pub fn render_pending(pending: &[daemon::PendingApproval]) -> String {
    let mut o = String::new();
    if pending.is_empty() {
        o.push_str("  none\n");
    }
    for p in pending {
        o.push_str(&format!(
            "  batch {} · {} · {} · {} payments · {} · submitted by {}\n",
            p.batch,
            p.channel,
            p.file,
            p.payments,
            p.totals.join(" + "),
            p.submitter.as_deref().unwrap_or("?"),
        ));
        o.push_str(&format!(
            "    approvals {}/{}{} · {} more needed{}\n",
            p.approvals.len(),
            p.required,
            if p.approvals.is_empty() {
                String::new()
            } else {
                format!(" (by {})", p.approvals.join(", "))
            },
            p.still_needed,
            p.expires_at
                .as_deref()
                .map(|e| format!(" · expires {e}"))
                .unwrap_or_default()
        ));
        for r in &p.reasons {
            o.push_str(&format!("    why: {r}\n"));
        }
        o.push_str(&format!(
            "    may approve: {}{}\n    paygate approve {}\n",
            if p.who_may_approve.is_empty() {
                "nobody yet — an admin grants the approver role: paygate users grant NAME approver --channel CH".to_string()
            } else {
                p.who_may_approve.join(", ")
            },
            match p.you_may_approve {
                Some(true) => " (you may)",
                Some(false) => " (not you)",
                None => "",
            },
            p.batch
        ));
    }
    o
}

fn human_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}
