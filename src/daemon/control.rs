//! The control socket: `paygate approve`, `reject`, `readmit`, `status` and `reload` talk to
//! the running daemon here, one JSON line each way. The caller is who the kernel says it is
//! (`SO_PEERCRED`), never what the request says.

use super::Ctx;
use super::folders;
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
            let user = match stream.peer_cred() {
                Ok(c) => folders::user_name(c.uid()),
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
            let resp = match serde_json::from_str::<Request>(&line) {
                Ok(req) => handle(&ctx, &user, req).await,
                Err(e) => Response::err(format!("not a request: {e}")),
            };
            let mut out = serde_json::to_string(&resp).unwrap_or_else(|_| "{}".into());
            out.push('\n');
            let _ = w.write_all(out.as_bytes()).await;
        });
    }
}

async fn handle(ctx: &Arc<Ctx>, user: &str, req: Request) -> Response {
    match req {
        Request::Status => match super::status(ctx).await {
            Ok(s) => Response {
                ok: true,
                message: String::new(),
                data: serde_json::to_value(s).unwrap_or_default(),
            },
            Err(e) => Response::err(e.to_string()),
        },
        Request::Approve { batch, comment } => approve(ctx, user, batch, comment).await,
        Request::Reject { batch, reason } => {
            if reason.trim().is_empty() {
                return Response::err("give a reason: paygate reject ID --reason TEXT");
            }
            if let Err(m) = may_approve(ctx, user, batch).await {
                return Response::err(m);
            }
            match ctx
                .store
                .decline(batch, user, &reason, chrono::Utc::now())
                .await
            {
                Ok(_) => {
                    tracing::warn!(
                        batch,
                        stage = "declined",
                        "batch {batch} declined by {user}: {reason}"
                    );
                    Response::ok(format!(
                        "batch {batch} declined by {user}; it will not be sent"
                    ))
                }
                Err(e) => Response::err(e.to_string()),
            }
        }
        Request::Readmit { path, reason } => readmit(ctx, user, &path, reason).await,
        Request::Reload => match super::reload(ctx, user).await {
            Ok(m) => Response::ok(m),
            Err(m) => Response::err(m),
        },
    }
}

/// The channel's approvers list, when it has one, must name the user.
async fn may_approve(ctx: &Arc<Ctx>, user: &str, batch: i64) -> Result<(), String> {
    let row = ctx.store.batch(batch).await.map_err(|e| e.to_string())?;
    let cfg = ctx.cfg();
    let Some(ch) = cfg.channel(&row.channel) else {
        return Err(format!(
            "batch {batch}'s channel `{}` is no longer configured",
            row.channel
        ));
    };
    if !ch.approval.approvers.is_empty() && !ch.approval.approvers.iter().any(|a| a == user) {
        let _ = ctx
            .store
            .audit_event(
                user,
                "approval.refused",
                Some(batch),
                "not among the channel's approvers",
            )
            .await;
        return Err(format!(
            "{user} may not approve channel `{}`'s batches (approvers: {})",
            row.channel,
            ch.approval.approvers.join(", ")
        ));
    }
    Ok(())
}

async fn approve(ctx: &Arc<Ctx>, user: &str, batch: i64, comment: Option<String>) -> Response {
    if let Err(m) = may_approve(ctx, user, batch).await {
        return Response::err(m);
    }
    let cfg = ctx.cfg();
    let required = ctx
        .store
        .batch(batch)
        .await
        .ok()
        .and_then(|r| cfg.channel(&r.channel).map(|c| c.approval.required))
        .unwrap_or(1);
    match ctx
        .store
        .approve(
            batch,
            user,
            comment.as_deref(),
            required,
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
            Response {
                ok: true,
                message,
                data: serde_json::to_value(a).unwrap_or_default(),
            }
        }
        Err(e) => {
            let _ = ctx
                .store
                .audit_event(user, "approval.refused", Some(batch), &e.to_string())
                .await;
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
