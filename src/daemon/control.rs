//! The control socket: `paygate approve`, `reject`, `readmit`, `status`, `reload`, `users`,
//! `audit` and `batches --pending` talk to the running daemon here, one JSON line each way. The
//! caller is who the kernel says it is (`SO_PEERCRED`), never what the request says, and every
//! request is checked against the caller's roles in the store before anything happens.

use super::Ctx;
use super::folders;
use crate::approval::{self, ANY_CHANNEL, Role};
use crate::config::AmountLimit;
use crate::store::AccessError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Approve {
        batch: i64,
        #[serde(default)]
        comment: Option<String>,
    },
    Reject {
        batch: i64,
        reason: String,
    },
    Readmit {
        path: String,
        #[serde(default)]
        reason: Option<String>,
    },
    Reload,
    AlertAck {
        id: i64,
    },
    /// Batches waiting for approval, with what they need and who may give it.
    Pending,
    UsersList,
    UsersAdd {
        name: String,
        #[serde(default)]
        system: bool,
        reason: String,
    },
    UsersGrant {
        name: String,
        role: String,
        channel: String,
        #[serde(default)]
        limit: Option<String>,
        reason: String,
    },
    UsersRevoke {
        name: String,
        role: String,
        channel: String,
        reason: String,
    },
    UsersDisable {
        name: String,
        reason: String,
    },
    UsersEnable {
        name: String,
        reason: String,
    },
    UsersReview {
        unused_days: u32,
    },
    Audit {
        #[serde(default)]
        batch: Option<i64>,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        since: Option<String>,
    },
    AuditVerify,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    fn ok(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
    fn err(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }
    fn data(message: impl Into<String>, data: impl Serialize) -> Response {
        Response {
            ok: true,
            message: message.into(),
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "cannot reach the paygate daemon at {0}: {1} (is `paygate run` started, and may this user use its socket?)"
    )]
    Connect(String, std::io::Error),
    #[error("talking to the daemon at {0}: {1}")]
    Io(String, std::io::Error),
    #[error("the daemon's answer could not be read: {0}")]
    Answer(String),
}

/// Sends one request and waits (at most a minute) for the answer.
pub fn request(socket: &Path, req: &Request) -> Result<Response, ControlError> {
    let s = socket.display().to_string();
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| ControlError::Connect(s.clone(), e))?;
    let t = Some(Duration::from_secs(60));
    stream
        .set_read_timeout(t)
        .and_then(|_| stream.set_write_timeout(t))
        .map_err(|e| ControlError::Io(s.clone(), e))?;
    let mut line = serde_json::to_string(req).map_err(|e| ControlError::Answer(e.to_string()))?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| ControlError::Io(s.clone(), e))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| ControlError::Io(s.clone(), e))?;
    serde_json::from_str(&answer).map_err(|e| ControlError::Answer(format!("{e}: {answer:?}")))
}

/// Binds the socket: refuses to start beside a running daemon, replaces a stale socket file,
/// and gives it mode 0660 (and the configured group).
pub fn bind(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener, String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "{}: another paygate daemon is running with this socket",
            path.display()
        ));
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(format!(
                "{}: exists and is not a socket; remove it or set paygate.control_socket",
                path.display()
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("{}: cannot listen: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(g) = group {
        let gid = folders::group_id(g).ok_or_else(|| {
            format!("paygate.control_group: there is no group `{g}` on this system")
        })?;
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(|e| format!("{}: cannot give it group {g}: {e}", path.display()))?;
    }
    Ok(listener)
}

/// Serves the socket until `token` is cancelled.
pub async fn serve(ctx: Arc<Ctx>, listener: tokio::net::UnixListener, token: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let (user, uid) = match stream.peer_cred() {
                Ok(c) => (folders::user_name(c.uid()), c.uid()),
                Err(e) => {
                    tracing::warn!("control socket: no peer credentials: {e}");
                    return;
                }
            };
            let (r, mut w) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(r).lines();
            let line = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
            {
                Ok(Ok(Some(l))) => l,
                _ => return,
            };
            let resp = match (
                serde_json::from_str::<Request>(&line),
                ctx.store.same_account(&user, uid).await,
            ) {
                (Err(e), _) => Response::err(format!("not a request: {e}")),
                (_, Err(e)) => Response::err(e.to_string()),
                (_, Ok(Err(why))) => Response::err(why),
                (Ok(req), Ok(Ok(()))) => handle(&ctx, &user, req).await,
            };
            let mut out = serde_json::to_string(&resp).unwrap_or_else(|_| "{}".into());
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
        });
    }
}

async fn handle(ctx: &Arc<Ctx>, user: &str, req: Request) -> Response {
    let now = chrono::Utc::now();
    match req {
        Request::Status => {
            if let Err(m) = reader(
                ctx,
                user,
                &[Role::Admin, Role::Auditor, Role::Approver, Role::Submitter],
                "see the daemon's status",
            )
            .await
            {
                return Response::err(m);
            }
            match super::status(ctx).await {
                Ok(s) => Response::data("", s),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Pending => {
            if let Err(m) = reader(
                ctx,
                user,
                &[Role::Admin, Role::Auditor, Role::Approver, Role::Submitter],
                "see the batches waiting for approval",
            )
            .await
            {
                return Response::err(m);
            }
            match super::pending_approvals(ctx, Some(user)).await {
                Ok(p) => Response::data("", p),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Approve { batch, comment } => approve(ctx, user, batch, comment).await,
        Request::Reject { batch, reason } => {
            if reason.trim().is_empty() {
                return Response::err("give a reason: paygate reject ID --reason TEXT");
            }
            match ctx.store.decline(batch, user, &reason, now).await {
                Ok(_) => {
                    tracing::warn!(
                        batch,
                        stage = "declined",
                        "batch {batch} declined by {user}: {reason}"
                    );
                    super::pickup::note_to_submitter(
                        ctx,
                        batch,
                        "declined",
                        &format!("declined by {user}: {reason}"),
                    )
                    .await;
                    Response::ok(format!(
                        "batch {batch} declined by {user}; it will not be sent"
                    ))
                }
                Err(e) => {
                    if matches!(e, crate::store::AccessError::Refused(_)) {
                        super::note_refusal(ctx, user, &format!("decline batch {batch}")).await;
                    }
                    Response::err(e.to_string())
                }
            }
        }
        Request::Readmit { path, reason } => readmit(ctx, user, &path, reason).await,
        Request::AlertAck { id } => {
            if let Err(m) = reader(
                ctx,
                user,
                &[Role::Admin, Role::Approver, Role::Auditor],
                "acknowledge an alert",
            )
            .await
            {
                return Response::err(m);
            }
            match ctx.store.ack_alert(id, user, chrono::Utc::now()).await {
                Ok(true) => Response::ok(format!("alert {id} acknowledged by {user} (audited)")),
                Ok(false) => Response::err(format!("no open alert {id}")),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Reload => {
            if let Err(e) = ctx
                .store
                .authorize(user, Role::Admin, ANY_CHANNEL, "reload the config")
                .await
            {
                return Response::err(e.to_string());
            }
            match super::reload(ctx, user).await {
                Ok(m) => Response::ok(m),
                Err(m) => Response::err(m),
            }
        }
        Request::UsersList => {
            if let Err(m) = reader_all(
                ctx,
                user,
                &[Role::Admin, Role::Auditor],
                "list users and roles",
            )
            .await
            {
                return Response::err(m);
            }
            match users_view(ctx).await {
                Ok(u) => Response::data("", u),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::UsersAdd {
            name,
            system,
            reason,
        } => {
            if let Some(m) = need_reason(&reason) {
                return Response::err(m);
            }
            if name.starts_with("uid:")
                || name.trim().is_empty()
                || name.contains(char::is_whitespace)
            {
                return Response::err(format!("{name:?} is not a user name"));
            }
            let uid = folders::user_id(&name);
            if uid.is_none() && !system {
                return Response::err(format!(
                    "there is no OS account `{name}` on this machine; paygate users are OS accounts (for a channel's configured submitter that is no account, add it with --system)"
                ));
            }
            let uid = if system { None } else { uid };
            done(
                ctx.store
                    .add_user(user, &name, uid, system, &reason, now)
                    .await,
                format!(
                    "{name} added by {user}; grant roles with: paygate users grant {name} ROLE --channel CH --reason TEXT"
                ),
            )
        }
        Request::UsersGrant {
            name,
            role,
            channel,
            limit,
            reason,
        } => {
            if let Some(m) = need_reason(&reason) {
                return Response::err(m);
            }
            let role = match parse_role(&role) {
                Ok(r) => r,
                Err(m) => return Response::err(m),
            };
            if let Err(m) = known_channel(ctx, &channel) {
                return Response::err(m);
            }
            let limit = match limit.as_deref().map(AmountLimit::parse).transpose() {
                Ok(l) => l,
                Err(m) => return Response::err(format!("--limit: {m}")),
            };
            done(
                ctx.store
                    .grant(user, &name, role, &channel, limit.as_ref(), &reason, now)
                    .await,
                format!(
                    "{name} now holds {role} on channel `{channel}`{} (granted by {user})",
                    limit
                        .map(|l| format!(" up to {l} per batch"))
                        .unwrap_or_default()
                ),
            )
        }
        Request::UsersRevoke {
            name,
            role,
            channel,
            reason,
        } => {
            if let Some(m) = need_reason(&reason) {
                return Response::err(m);
            }
            let role = match parse_role(&role) {
                Ok(r) => r,
                Err(m) => return Response::err(m),
            };
            let cfg = ctx.cfg();
            done(
                ctx.store
                    .revoke(
                        user,
                        &name,
                        role,
                        &channel,
                        &reason,
                        cfg.paygate.admin.as_deref(),
                        now,
                    )
                    .await,
                format!(
                    "{name} no longer holds {role} on channel `{channel}` (revoked by {user}); this holds from now on"
                ),
            )
        }
        Request::UsersDisable { name, reason } | Request::UsersEnable { name, reason }
            if need_reason(&reason).is_some() =>
        {
            let _ = name;
            Response::err(need_reason(&reason).unwrap_or_default())
        }
        Request::UsersDisable { name, reason } => {
            let cfg = ctx.cfg();
            done(
                ctx.store
                    .set_user_enabled(
                        user,
                        &name,
                        false,
                        &reason,
                        cfg.paygate.admin.as_deref(),
                        now,
                    )
                    .await,
                format!("{name} disabled by {user}: every role of theirs is inert from now on"),
            )
        }
        Request::UsersEnable { name, reason } => done(
            ctx.store
                .set_user_enabled(user, &name, true, &reason, None, now)
                .await,
            format!("{name} enabled again by {user}"),
        ),
        Request::UsersReview { unused_days } => {
            if let Err(m) = reader_all(
                ctx,
                user,
                &[Role::Admin, Role::Auditor],
                "review permissions",
            )
            .await
            {
                return Response::err(m);
            }
            match review(ctx, user, unused_days).await {
                Ok(r) => Response::data(
                    format!(
                        "review by {user} recorded: {} role(s), {} flagged",
                        r.lines.len(),
                        r.flagged
                    ),
                    r,
                ),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Audit {
            batch,
            user: who,
            since,
        } => {
            if let Err(m) = reader_all(
                ctx,
                user,
                &[Role::Admin, Role::Auditor],
                "read the audit trail",
            )
            .await
            {
                return Response::err(m);
            }
            let since = match since.as_deref().map(parse_since).transpose() {
                Ok(s) => s,
                Err(m) => return Response::err(m),
            };
            match ctx.store.audit_records(batch, who.as_deref(), since).await {
                Ok(r) => Response::data("", r),
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::AuditVerify => {
            if let Err(m) = reader_all(
                ctx,
                user,
                &[Role::Admin, Role::Auditor],
                "verify the audit trail",
            )
            .await
            {
                return Response::err(m);
            }
            match ctx.store.verify_audit().await {
                Ok(Ok(n)) => Response::ok(format!(
                    "the audit trail is intact: {n} entries, each chained to the one before"
                )),
                Ok(Err(broken)) => Response {
                    ok: false,
                    message: broken.to_string(),
                    data: serde_json::json!({ "broken_at": broken.seq }),
                },
                Err(e) => Response::err(e.to_string()),
            }
        }
    }
}

fn need_reason(reason: &str) -> Option<String> {
    reason
        .trim()
        .is_empty()
        .then(|| "give a reason (--reason TEXT): every change of users and roles is on the record with who, when and why".into())
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| {
        format!(
            "{s:?} is not a role; roles: {}",
            Role::ALL.map(|r| r.as_str()).join(", ")
        )
    })
}

fn known_channel(ctx: &Arc<Ctx>, channel: &str) -> Result<(), String> {
    let cfg = ctx.cfg();
    if channel == ANY_CHANNEL || cfg.channels.contains_key(channel) {
        Ok(())
    } else {
        Err(format!(
            "there is no channel `{channel}`; channels: {} (or * for every channel)",
            cfg.channels.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    }
}

fn done(r: Result<(), AccessError>, ok: String) -> Response {
    match r {
        Ok(()) => {
            tracing::info!(stage = "access", "{ok}");
            Response::ok(ok)
        }
        Err(e) => Response::err(e.to_string()),
    }
}

/// The caller holds one of `roles` on some channel (read-only requests about batches).
async fn reader(ctx: &Arc<Ctx>, user: &str, roles: &[Role], action: &str) -> Result<(), String> {
    let p = ctx.store.person(user).await.map_err(|e| e.to_string())?;
    match approval::any_of(&p, roles, action) {
        Ok(g) => {
            let _ = ctx.store.role_used(user, g, chrono::Utc::now()).await;
            Ok(())
        }
        Err(r) => {
            super::note_refusal(ctx, user, action).await;
            Err(r.to_string())
        }
    }
}

/// The caller holds one of `roles` on `*`: the audit trail and the users span every channel.
async fn reader_all(
    ctx: &Arc<Ctx>,
    user: &str,
    roles: &[Role],
    action: &str,
) -> Result<(), String> {
    let p = ctx.store.person(user).await.map_err(|e| e.to_string())?;
    let scoped = approval::Person {
        grants: p
            .grants
            .iter()
            .filter(|g| g.channel == ANY_CHANNEL)
            .cloned()
            .collect(),
        ..p
    };
    match approval::any_of(&scoped, roles, action) {
        Ok(g) => {
            let _ = ctx.store.role_used(user, g, chrono::Utc::now()).await;
            Ok(())
        }
        Err(r) => {
            super::note_refusal(ctx, user, action).await;
            Err(r.to_string())
        }
    }
}

/// `--since`: an RFC 3339 time or a day (`2026-12-01`, from its start in local time).
pub fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| format!("--since {s:?}: give a day (2026-12-01) or an RFC 3339 time"))
}

/// Users with their roles, and whether their OS account still exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    pub name: String,
    pub uid: Option<i64>,
    pub system: bool,
    pub disabled_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub os_account: String,
    pub roles: Vec<RoleView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleView {
    pub role: String,
    pub channel: String,
    pub limit: Option<String>,
    pub granted_by: String,
    pub granted_at: String,
    pub reason: String,
    pub last_used_at: Option<String>,
}

fn os_account(name: &str, uid: Option<i64>, system: bool) -> approval::OsAccount {
    if system {
        return approval::OsAccount::NotNeeded;
    }
    match (folders::user_id(name), uid) {
        (None, _) => approval::OsAccount::Missing,
        (Some(now), Some(then)) if i64::from(now) != then => approval::OsAccount::UidChanged,
        _ => approval::OsAccount::Present,
    }
}

async fn users_view(ctx: &Arc<Ctx>) -> Result<Vec<UserView>, crate::store::StoreError> {
    Ok(ctx
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| UserView {
            os_account: os_account(&u.name, u.uid, u.system).as_str().into(),
            name: u.name,
            uid: u.uid,
            system: u.system,
            disabled_at: u.disabled_at,
            created_at: u.created_at,
            created_by: u.created_by,
            roles: u
                .roles
                .into_iter()
                .map(|r| RoleView {
                    role: r.role,
                    channel: r.channel,
                    limit: r.limit,
                    granted_by: r.granted_by,
                    granted_at: r.granted_at,
                    reason: r.reason,
                    last_used_at: r.last_used_at,
                })
                .collect(),
        })
        .collect())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: String,
    pub at: String,
    pub unused_days: u32,
    pub lines: Vec<approval::ReviewLine>,
    pub flagged: usize,
    pub previous: Option<(String, String)>,
}

async fn review(
    ctx: &Arc<Ctx>,
    reviewer: &str,
    unused_days: u32,
) -> Result<Review, crate::store::StoreError> {
    let now = chrono::Utc::now();
    let previous = ctx.store.last_review().await?;
    let mut inputs = Vec::new();
    for u in ctx.store.users().await? {
        let os = os_account(&u.name, u.uid, u.system);
        inputs.push(approval::ReviewInput {
            user: u.name.clone(),
            disabled: u.disabled_at.is_some(),
            os_account: os,
            roles: u
                .roles
                .iter()
                .map(|r| approval::ReviewRole {
                    role: r.role.clone(),
                    channel: r.channel.clone(),
                    limit: r.limit.clone(),
                    granted_by: r.granted_by.clone(),
                    granted_at: r.granted_at.clone(),
                    last_used_at: r.last_used_at.clone(),
                })
                .collect(),
        });
    }
    let lines = approval::review(&inputs, now, unused_days);
    let flagged = lines.iter().filter(|l| !l.flags.is_empty()).count();
    ctx.store
        .record_review(reviewer, unused_days, lines.len(), flagged, now)
        .await?;
    Ok(Review {
        reviewer: reviewer.into(),
        at: now.to_rfc3339(),
        unused_days,
        lines,
        flagged,
        previous,
    })
}

async fn approve(ctx: &Arc<Ctx>, user: &str, batch: i64, comment: Option<String>) -> Response {
    let cfg = ctx.cfg();
    let expire_after = match ctx.store.batch(batch).await {
        Ok(b) => match cfg.channel(&b.channel) {
            Some(ch) => ch.approval.expire_after(),
            None => {
                return Response::err(format!(
                    "batch {batch}'s channel `{}` is no longer configured",
                    b.channel
                ));
            }
        },
        Err(e) => return Response::err(e.to_string()),
    };
    match ctx
        .store
        .approve(
            batch,
            user,
            comment.as_deref(),
            expire_after,
            chrono::Utc::now(),
        )
        .await
    {
        Ok(a) => {
            ctx.kick.notify_one();
            tracing::info!(
                batch,
                stage = "approval",
                "batch {batch} approved by {user} ({} of {})",
                a.approvals,
                a.required
            );
            let message = if a.state == crate::model::BatchState::Approved {
                format!(
                    "batch {batch} approved by {user} ({} of {}): it will be sealed and sent",
                    a.approvals, a.required
                )
            } else {
                format!(
                    "approval by {user} recorded ({} of {}): batch {batch} waits for {} more",
                    a.approvals,
                    a.required,
                    a.required - a.approvals
                )
            };
            Response::data(message, a)
        }
        Err(e) => {
            tracing::warn!(
                batch,
                stage = "approval",
                error_code = "approval.refused",
                "{e}"
            );
            if matches!(e, crate::store::AccessError::Refused(_)) {
                super::note_refusal(ctx, user, &format!("approve batch {batch}")).await;
            }
            Response::err(e.to_string())
        }
    }
}

/// An admin re-admits a file refused as a duplicate: one more admission of its content is
/// recorded (audited), and the file goes back to `inbound/`.
async fn readmit(ctx: &Arc<Ctx>, user: &str, path: &str, reason: Option<String>) -> Response {
    let cfg = ctx.cfg();
    let file = std::path::PathBuf::from(path);
    let Ok(canon) = std::fs::canonicalize(&file) else {
        return Response::err(format!("{path}: no such file"));
    };
    let mut found = None;
    for (name, ch) in &cfg.channels {
        let f = folders::Folders::of(&cfg, ch);
        let rejected = std::fs::canonicalize(&f.rejected).unwrap_or(f.rejected.clone());
        if canon.parent() == Some(rejected.as_path()) {
            found = Some((name.clone(), f));
        }
    }
    let Some((channel, f)) = found else {
        return Response::err(format!(
            "{path} is not in a channel's rejected/ folder: only refused duplicates are re-admitted"
        ));
    };
    if let Err(e) = ctx
        .store
        .authorize(user, Role::Admin, &channel, "re-admit a file")
        .await
    {
        return Response::err(e.to_string());
    }
    let meta = match std::fs::symlink_metadata(&canon) {
        Ok(m) if m.is_file() => m,
        _ => return Response::err(format!("{path}: not a regular file")),
    };
    let _ = meta;
    let c = canon.clone();
    let sha = match tokio::task::spawn_blocking(move || crate::delivery::sha256_file(&c)).await {
        Ok(Ok((s, _))) => s,
        _ => return Response::err(format!("{path}: cannot be read")),
    };
    match ctx.store.file_seen(&channel, &sha).await {
        Ok(true) => {}
        Ok(false) => {
            return Response::err(format!(
                "{path} was not refused as a duplicate: fix it and drop it into inbound/ again instead"
            ));
        }
        Err(e) => return Response::err(e.to_string()),
    }
    let name = canon
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let target = f.inbound.join(&name);
    if std::fs::symlink_metadata(&target).is_ok() {
        return Response::err(format!(
            "{} already exists: wait until it is processed",
            target.display()
        ));
    }
    let reason = reason.unwrap_or_else(|| "re-admitted by an admin".into());
    if let Err(e) = ctx
        .store
        .readmit(&channel, &sha, user, &reason, chrono::Utc::now())
        .await
    {
        return Response::err(e.to_string());
    }
    if let Err(e) = std::fs::rename(&canon, &target) {
        return Response::err(format!("moving {path} to {}: {e}", target.display()));
    }
    for ext in ["errors.txt", "errors.csv"] {
        let _ = std::fs::remove_file(f.rejected.join(format!("{name}.{ext}")));
    }
    tracing::warn!(channel, file = %name, stage = "readmit", "{user} re-admitted {name}: {reason}");
    Response::ok(format!(
        "{name} re-admitted by {user} on channel `{channel}`: moved back to {} and will be processed once more",
        f.inbound.display()
    ))
}
