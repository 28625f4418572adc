//! `paygate users …` (users and roles, the permission review) and `paygate audit …` (read,
//! verify and export the audit trail). Every request goes to the running daemon, which knows
//! the caller from the kernel and checks their role; only reading the audit trail falls back
//! to the store file when the daemon is down (for whoever may read that file).

use super::daemon::{answer, ask};
use super::{Exit, load_config};
use crate::daemon::control::{self, Request, Response, Review, UserView};
use crate::store::AuditRecord;
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// Every user with their roles: where, granted by whom and when, last used when
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add an OS account as a paygate user (admins on every channel)
    Add {
        name: String,
        /// A channel's configured submitter that is no OS account; it can only submit
        #[arg(long)]
        system: bool,
        /// Why (recorded in the audit trail)
        #[arg(long)]
        reason: String,
    },
    /// Grant a role on a channel (or `*`): submitter, approver, admin, auditor
    Grant {
        name: String,
        role: String,
        #[arg(long)]
        channel: String,
        /// An approver's personal limit per batch: `50000`, or `EUR:50000,JPY:7000000`
        #[arg(long)]
        limit: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Take a role away; it holds from the next request on
    Revoke {
        name: String,
        role: String,
        #[arg(long)]
        channel: String,
        #[arg(long)]
        reason: String,
    },
    /// Make every role of a user inert (they stay on the record)
    Disable {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Let a disabled user act again
    Enable {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// The periodic permission review: who holds what, what is unused or orphaned; recorded
    Review {
        /// Flag roles not used for this many days
        #[arg(long, default_value_t = 90)]
        unused_days: u32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only entries about this batch
    #[arg(long)]
    batch: Option<i64>,
    /// Only entries by this user
    #[arg(long)]
    user: Option<String>,
    /// Only entries since this day (2026-12-01) or time (RFC 3339)
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
enum AuditCommand {
    /// Check the hash chain and its outside anchor; names the first bad entry
    Verify,
    /// JSON lines with the chain hashes, so that an auditor can verify them outside paygate
    Export {
        #[arg(long)]
        since: Option<String>,
    },
}

pub fn users(cmd: UsersCommand, config_path: &Path) -> Exit {
    let (req, json) = match cmd {
        UsersCommand::List { json } => (Request::UsersList, json),
        UsersCommand::Add {
            name,
            system,
            reason,
        } => (
            Request::UsersAdd {
                name,
                system,
                reason,
            },
            false,
        ),
        UsersCommand::Grant {
            name,
            role,
            channel,
            limit,
            reason,
        } => (
            Request::UsersGrant {
                name,
                role,
                channel,
                limit,
                reason,
            },
            false,
        ),
        UsersCommand::Revoke {
            name,
            role,
            channel,
            reason,
        } => (
            Request::UsersRevoke {
                name,
                role,
                channel,
                reason,
            },
            false,
        ),
        UsersCommand::Disable { name, reason } => (Request::UsersDisable { name, reason }, false),
        UsersCommand::Enable { name, reason } => (Request::UsersEnable { name, reason }, false),
        UsersCommand::Review { unused_days, json } => (Request::UsersReview { unused_days }, json),
    };
    let list = matches!(req, Request::UsersList);
    let review = matches!(req, Request::UsersReview { .. });
    let resp = match ask(config_path, &req) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !resp.ok || !(list || review) {
        return answer(resp);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp.data).unwrap_or_default()
        );
        return Exit::Ok;
    }
    if list {
        match serde_json::from_value::<Vec<UserView>>(resp.data) {
            Ok(u) => print!("{}", render_users(&u)),
            Err(e) => return unreadable(e),
        }
    } else {
        match serde_json::from_value::<Review>(resp.data) {
            Ok(r) => print!("{}", render_review(&r)),
            Err(e) => return unreadable(e),
        }
        println!("{}", resp.message);
    }
    Exit::Ok
}

fn unreadable(e: serde_json::Error) -> Exit {
    eprintln!("paygate: the daemon's answer could not be read: {e}");
    Exit::Usage
}

fn render_users(users: &[UserView]) -> String {
    let mut o = String::new();
    for u in users {
        o.push_str(&format!(
            "{}{}{} · added {} by {}{}\n",
            u.name,
            if u.system { " (system identity)" } else { "" },
            u.disabled_at
                .as_deref()
                .map(|d| format!(" · DISABLED since {d}"))
                .unwrap_or_default(),
            u.created_at,
            u.created_by,
            if u.os_account == "present" || u.system {
                String::new()
            } else {
                format!(" · OS account {}", u.os_account)
            }
        ));
        if u.roles.is_empty() {
            o.push_str("  no roles\n");
        }
        for r in &u.roles {
            o.push_str(&format!(
                "  {:<9} on {:<12}{} granted by {} at {} ({}) · last used {}\n",
                r.role,
                r.channel,
                r.limit
                    .as_deref()
                    .map(|l| format!(" limit {l} ·"))
                    .unwrap_or_default(),
                r.granted_by,
                r.granted_at,
                r.reason,
                r.last_used_at.as_deref().unwrap_or("never")
            ));
        }
    }
    if users.is_empty() {
        o.push_str("no users yet\n");
    }
    o
}

fn render_review(r: &Review) -> String {
    let mut o = format!(
        "permission review by {} at {} (roles unused for {} days are flagged){}\n",
        r.reviewer,
        r.at,
        r.unused_days,
        r.previous
            .as_ref()
            .map(|(who, at)| format!("; previous review by {who} at {at}"))
            .unwrap_or_else(|| "; the first review".into())
    );
    for l in &r.lines {
        o.push_str(&format!(
            "{} {:<12} {:<9} on {:<12} granted by {} at {} · last used {}\n",
            if l.flags.is_empty() { " " } else { "!" },
            l.user,
            l.role.as_deref().unwrap_or("(no role)"),
            l.channel.as_deref().unwrap_or("-"),
            l.granted_by.as_deref().unwrap_or("-"),
            l.granted_at.as_deref().unwrap_or("-"),
            l.last_used_at.as_deref().unwrap_or("never"),
        ));
        for f in &l.flags {
            o.push_str(&format!("      ! {f}\n"));
        }
    }
    o
}

/// Asks the daemon; when it is not running, reads the store directly (audit only).
fn ask_or_store(config_path: &Path, req: &Request) -> Result<Response, Exit> {
    let cfg = load_config(config_path)?;
    match control::request(&cfg.control_socket(), req) {
        Ok(r) => Ok(r),
        Err(control::ControlError::Connect(..)) => {
            eprintln!(
                "paygate: the daemon is not running: reading the store at {} directly",
                crate::store::redact_url(&cfg.database_url())
            );
            let rt = super::current_thread_runtime();
            rt.block_on(async {
                let store = crate::store::Store::open_configured(&cfg)
                    .await
                    .map_err(|e| {
                        eprintln!("paygate: {e}");
                        Exit::Usage
                    })?;
                let r = match req {
                    Request::AuditVerify => match store.verify_audit().await {
                        Ok(Ok(n)) => Response {
                            ok: true,
                            message: format!(
                                "the audit trail is intact: {n} entries, each chained to the one before"
                            ),
                            data: serde_json::Value::Null,
                        },
                        Ok(Err(b)) => Response {
                            ok: false,
                            message: b.to_string(),
                            data: serde_json::json!({ "broken_at": b.seq }),
                        },
                        Err(e) => Response {
                            ok: false,
                            message: e.to_string(),
                            data: serde_json::Value::Null,
                        },
                    },
                    Request::Audit { batch, user, since } => {
                        let since = match since.as_deref().map(control::parse_since).transpose() {
                            Ok(s) => s,
                            Err(m) => {
                                eprintln!("paygate: {m}");
                                return Err(Exit::Usage);
                            }
                        };
                        match store.audit_records(*batch, user.as_deref(), since).await {
                            Ok(r) => Response {
                                ok: true,
                                message: String::new(),
                                data: serde_json::to_value(r).unwrap_or_default(),
                            },
                            Err(e) => Response {
                                ok: false,
                                message: e.to_string(),
                                data: serde_json::Value::Null,
                            },
                        }
                    }
                    _ => unreachable!("only audit requests fall back to the store"),
                };
                store.close().await;
                Ok(r)
            })
        }
        Err(e) => {
            eprintln!("paygate: {e}");
            Err(Exit::Usage)
        }
    }
}

pub fn audit(args: AuditArgs, config_path: &Path) -> Exit {
    match args.command {
        Some(AuditCommand::Verify) => match ask_or_store(config_path, &Request::AuditVerify) {
            Ok(r) => answer(r),
            Err(e) => e,
        },
        Some(AuditCommand::Export { since }) => {
            let resp = match ask_or_store(
                config_path,
                &Request::Audit {
                    batch: None,
                    user: None,
                    since,
                },
            ) {
                Ok(r) => r,
                Err(e) => return e,
            };
            if !resp.ok {
                return answer(resp);
            }
            let records: Vec<AuditRecord> = match serde_json::from_value(resp.data) {
                Ok(r) => r,
                Err(e) => return unreadable(e),
            };
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for r in &records {
                if writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default()).is_err() {
                    return Exit::Usage;
                }
            }
            Exit::Ok
        }
        None => {
            let resp = match ask_or_store(
                config_path,
                &Request::Audit {
                    batch: args.batch,
                    user: args.user,
                    since: args.since,
                },
            ) {
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
            let records: Vec<AuditRecord> = match serde_json::from_value(resp.data) {
                Ok(r) => r,
                Err(e) => return unreadable(e),
            };
            for r in &records {
                println!(
                    "{:>6}  {}  {:<22} {:<20} {}{}",
                    r.seq,
                    r.at,
                    r.actor,
                    r.action,
                    r.batch.map(|b| format!("batch {b} · ")).unwrap_or_default(),
                    r.details
                );
            }
            if records.is_empty() {
                println!("no audit entries match");
            }
            Exit::Ok
        }
    }
}
