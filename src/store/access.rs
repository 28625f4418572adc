//! Users, roles and approvals in the store: who holds which role where, every change to that
//! (with who, when and why, in the audit trail of the same transaction), the approval policy's
//! decision for a new batch, and each approval. Permission checks run inside the transaction
//! that writes, through the pure `approval` module, so a revocation takes effect at once.

use super::{
    AuditRecord, BATCH_COLUMNS, Store, StoreError, append_audit, batch_row, move_batch, ts,
};
use crate::approval::{
    self, BatchFacts, Decision, Grant, IntakeFacts, Person, Refusal, Role, ScrutinyFacts, Standing,
};
use crate::config::AmountLimit;
use crate::model::{BatchState, Event, Money};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// States of a batch that will be, or was, paid: they count for daily limits and duplicates.
const PAYING: &str = "('awaiting_approval', 'approved', 'sealed', 'uploading', 'sent', 'accepted', 'completed', 'partially_rejected')";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("{0} is already a paygate user")]
    Exists(String),
    #[error("{0} is not a paygate user (paygate users add {0})")]
    NoSuchUser(String),
    #[error("{user} does not hold the {role} role on channel `{channel}`")]
    NoSuchRole {
        user: String,
        role: Role,
        channel: String,
    },
    #[error(
        "{0} is the bootstrap admin named in the config (paygate.admin): change the config and reload instead"
    )]
    Bootstrap(String),
    #[error("batch {0} does not exist")]
    NoSuchBatch(i64),
    #[error("batch {batch} is `{state}`, not waiting for approval")]
    NotAwaiting { batch: i64, state: BatchState },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AccessError {
    fn from(e: sqlx::Error) -> Self {
        AccessError::Store(StoreError::Sql(e))
    }
}

/// A user with their roles, as `paygate users list` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub uid: Option<i64>,
    pub system: bool,
    pub created_at: String,
    pub created_by: String,
    pub disabled_at: Option<String>,
    pub roles: Vec<RoleRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoleRow {
    pub role: String,
    pub channel: String,
    pub limit: Option<String>,
    pub granted_by: String,
    pub granted_at: String,
    pub reason: String,
    pub last_used_at: Option<String>,
}

/// What `decide_intake` needs to look up besides the batch.
#[derive(Debug, Clone)]
pub struct IntakeQuery {
    pub channel: String,
    pub debtor_account: String,
    /// Start of today (local calendar day), for the daily totals; `None`: no daily limit.
    pub channel_day: Option<DateTime<Utc>>,
    pub account_day: Option<DateTime<Utc>>,
    pub new_beneficiary: bool,
    /// Look for duplicates in batches created since; `None`: off.
    pub duplicates_since: Option<DateTime<Utc>>,
    pub outlier_factor: Option<Decimal>,
}

/// A batch waiting for approval, with what it still needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    pub batch: i64,
    pub channel: String,
    pub submitter: Option<String>,
    pub dropped_by: Option<String>,
    pub file: String,
    pub payments: i64,
    pub totals: Vec<Money>,
    pub required: u32,
    pub approved_by: Vec<String>,
    pub reasons: Vec<String>,
    pub waiting_since: String,
}

async fn load_person(conn: &mut AnyConnection, name: &str) -> Result<Person, StoreError> {
    let standing = match sqlx::query("SELECT disabled_at FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
    {
        None => Standing::Unknown,
        Some(r) if r.get::<Option<String>, _>(0).is_some() => Standing::Disabled,
        Some(_) => Standing::Active,
    };
    let rows = sqlx::query(
        "SELECT role, channel, limit_amount FROM roles WHERE user_name = $1 ORDER BY id",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let grants = rows
        .iter()
        .filter_map(|r| grant(r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(Person {
        name: name.into(),
        standing,
        grants,
    })
}

/// A stored role as the policy sees it (an unknown role name holds nothing).
fn grant(role: &str, channel: String, limit: Option<String>) -> Option<Grant> {
    Some(Grant {
        role: Role::parse(role)?,
        channel,
        limit: limit.and_then(|l| AmountLimit::parse(&l).ok()),
    })
}

async fn touch(
    conn: &mut AnyConnection,
    user: &str,
    g: &Grant,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE roles SET last_used_at = $1 WHERE user_name = $2 AND role = $3 AND channel = $4",
    )
    .bind(ts(at))
    .bind(user)
    .bind(g.role.as_str())
    .bind(&g.channel)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A batch's total per currency, from its payments.
async fn totals(conn: &mut AnyConnection, batch: i64) -> Result<Vec<Money>, StoreError> {
    let rows = sqlx::query(
        "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) FROM payments WHERE batch_id = $1 GROUP BY currency ORDER BY currency",
    )
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    sums(&rows)
}

fn sums(rows: &[sqlx::any::AnyRow]) -> Result<Vec<Money>, StoreError> {
    rows.iter()
        .map(|r| {
            let c: String = r.get(0);
            let cur = c
                .parse()
                .map_err(|_| StoreError::BadState(format!("currency {c}")))?;
            Ok(Money::from_minor_units(r.get(1), cur))
        })
        .collect()
}

impl Store {
    /// A user's standing and roles.
    pub async fn person(&self, name: &str) -> Result<Person, StoreError> {
        let mut c = self.pool.acquire().await?;
        load_person(&mut c, name).await
    }

    /// Checks that `user` may do `action` (`role` on `channel`) and records the role's use.
    pub async fn authorize(
        &self,
        user: &str,
        role: Role,
        channel: &str,
        action: &str,
    ) -> Result<(), AccessError> {
        let mut c = self.pool.acquire().await?;
        let p = load_person(&mut c, user).await?;
        let g = approval::authorize(&p, role, channel, action)?.clone();
        touch(&mut c, user, &g, Utc::now()).await?;
        Ok(())
    }

    /// Whether `uid` is the account that was added as `name`: an account deleted and made
    /// again under the same name (another uid) inherits nothing. `Ok(Err(why))` when not.
    pub async fn same_account(
        &self,
        name: &str,
        uid: u32,
    ) -> Result<Result<(), String>, StoreError> {
        let stored: Option<Option<i64>> = sqlx::query("SELECT uid FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.get(0));
        Ok(match stored {
            Some(Some(added)) if added != i64::from(uid) => Err(format!(
                "the OS account `{name}` now has uid {uid}, but the `{name}` added to paygate had uid {added}: it holds no role until an admin re-adds it (paygate users review flags it)"
            )),
            _ => Ok(()),
        })
    }

    /// Records that `user` used `grant` (for the permission review).
    pub async fn role_used(
        &self,
        user: &str,
        grant: &Grant,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut c = self.pool.acquire().await?;
        touch(&mut c, user, grant, at).await
    }

    /// The config's bootstrap admin holds `admin` on `*` (added, re-enabled and granted when
    /// missing, on the record).
    pub async fn ensure_bootstrap_admin(
        &self,
        name: &str,
        uid: Option<u32>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let mut changed = sqlx::query(
            "INSERT INTO users (name, uid, created_at, created_by) VALUES ($1, $2, $3, 'config') ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(uid.map(i64::from))
        .bind(ts(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        changed |= sqlx::query(
            "UPDATE users SET disabled_at = NULL, disabled_by = NULL WHERE name = $1 AND disabled_at IS NOT NULL",
        )
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        changed |= sqlx::query(
            "INSERT INTO roles (user_name, role, channel, granted_by, granted_at, reason) VALUES ($1, 'admin', '*', 'config', $2, 'bootstrap admin (paygate.admin)') ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            append_audit(
                &mut tx,
                at,
                "config",
                "user.bootstrap",
                None,
                &format!("user={name} role=admin channel=* (paygate.admin)"),
            )
            .await?;
        }
        self.commit(tx).await?;
        Ok(changed)
    }

    /// Adds a user and grants a role without the policy's checks. Only for `paygate demo`,
    /// which sets up a throw-away store for the user running it (who could not grant
    /// themselves the approver role otherwise). Whoever can write the store file could do the
    /// same with SQL; the daemon never calls this. On the record as `paygate-demo`.
    pub async fn grant_for_demo(
        &self,
        name: &str,
        system: bool,
        role: Role,
        channel: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (name, system, created_at, created_by) VALUES ($1, $2, $3, 'paygate-demo') ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(i64::from(system))
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO roles (user_name, role, channel, granted_by, granted_at, reason) VALUES ($1, $2, $3, 'paygate-demo', $4, 'paygate demo set-up') ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(channel)
        .bind(ts(at))
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            "paygate-demo",
            "role.granted",
            None,
            &format!("user={name} role={role} channel={channel} reason=paygate demo set-up"),
        )
        .await?;
        self.commit(tx).await
    }

    /// Adds a user: an OS account (`uid`), or a system identity that can only submit.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_user(
        &self,
        actor: &str,
        name: &str,
        uid: Option<u32>,
        system: bool,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let mut tx = self.begin().await?;
        let me = load_person(&mut tx, actor).await?;
        let g = approval::authorize(&me, Role::Admin, approval::ANY_CHANNEL, "add users")?.clone();
        let done = sqlx::query(
            "INSERT INTO users (name, uid, system, created_at, created_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(uid.map(i64::from))
        .bind(i64::from(system))
        .bind(ts(at))
        .bind(actor)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(AccessError::Exists(name.into()));
        }
        touch(&mut tx, actor, &g, at).await?;
        append_audit(
            &mut tx,
            at,
            actor,
            "user.added",
            None,
            &format!(
                "user={name} uid={} system={system} reason={reason}",
                uid.map_or("-".into(), |u| u.to_string())
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Disables (every role becomes inert at once) or enables a user again.
    pub async fn set_user_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
        reason: &str,
        bootstrap: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        if !enabled && bootstrap == Some(name) {
            return Err(AccessError::Bootstrap(name.into()));
        }
        let mut tx = self.begin().await?;
        let me = load_person(&mut tx, actor).await?;
        let verb = if enabled { "enable" } else { "disable" };
        let g = approval::authorize(
            &me,
            Role::Admin,
            approval::ANY_CHANNEL,
            &format!("{verb} users"),
        )?
        .clone();
        let n = if enabled {
            sqlx::query("UPDATE users SET disabled_at = NULL, disabled_by = NULL WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query("UPDATE users SET disabled_at = $2, disabled_by = $3 WHERE name = $1")
                .bind(name)
                .bind(ts(at))
                .bind(actor)
                .execute(&mut *tx)
                .await?
        }
        .rows_affected();
        if n == 0 {
            return Err(AccessError::NoSuchUser(name.into()));
        }
        touch(&mut tx, actor, &g, at).await?;
        append_audit(
            &mut tx,
            at,
            actor,
            &format!("user.{verb}d"),
            None,
            &format!("user={name} reason={reason}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Grants a role (an admin whose scope covers the channel; never to oneself).
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        channel: &str,
        limit: Option<&AmountLimit>,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        if limit.is_some() && role != Role::Approver {
            return Err(AccessError::Invalid(
                "--limit is an approver's personal limit per batch: only for the approver role"
                    .into(),
            ));
        }
        let mut tx = self.begin().await?;
        let me = load_person(&mut tx, actor).await?;
        approval::may_change_role(&me, name, role, channel, "grant")?;
        let user = sqlx::query("SELECT system FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| AccessError::NoSuchUser(name.into()))?;
        if user.get::<i64, _>(0) != 0 && role != Role::Submitter {
            return Err(Refusal::SystemUser { user: name.into() }.into());
        }
        let limit_s = limit.map(|l| l.to_string());
        sqlx::query(
            "INSERT INTO roles (user_name, role, channel, limit_amount, granted_by, granted_at, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (user_name, role, channel) DO UPDATE SET limit_amount = excluded.limit_amount, granted_by = excluded.granted_by, granted_at = excluded.granted_at, reason = excluded.reason",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(channel)
        .bind(&limit_s)
        .bind(actor)
        .bind(ts(at))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        if let Some(g) = approval::authorize(&me, Role::Admin, channel, "")
            .ok()
            .cloned()
        {
            touch(&mut tx, actor, &g, at).await?;
        }
        append_audit(
            &mut tx,
            at,
            actor,
            "role.granted",
            None,
            &format!(
                "user={name} role={role} channel={channel} limit={} reason={reason}",
                limit_s.as_deref().unwrap_or("-")
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Revokes a role; it takes effect at once (every check reads the store).
    #[allow(clippy::too_many_arguments)]
    pub async fn revoke(
        &self,
        actor: &str,
        name: &str,
        role: Role,
        channel: &str,
        reason: &str,
        bootstrap: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        if bootstrap == Some(name) && role == Role::Admin && channel == approval::ANY_CHANNEL {
            return Err(AccessError::Bootstrap(name.into()));
        }
        let mut tx = self.begin().await?;
        let me = load_person(&mut tx, actor).await?;
        approval::may_change_role(&me, name, role, channel, "revoke")?;
        let n =
            sqlx::query("DELETE FROM roles WHERE user_name = $1 AND role = $2 AND channel = $3")
                .bind(name)
                .bind(role.as_str())
                .bind(channel)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 0 {
            return Err(AccessError::NoSuchRole {
                user: name.into(),
                role,
                channel: channel.into(),
            });
        }
        if let Some(g) = approval::authorize(&me, Role::Admin, channel, "")
            .ok()
            .cloned()
        {
            touch(&mut tx, actor, &g, at).await?;
        }
        append_audit(
            &mut tx,
            at,
            actor,
            "role.revoked",
            None,
            &format!("user={name} role={role} channel={channel} reason={reason}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Every user with their roles.
    pub async fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let users = sqlx::query(
            "SELECT name, uid, system, created_at, created_by, disabled_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let roles = sqlx::query(
            "SELECT user_name, role, channel, limit_amount, granted_by, granted_at, reason, last_used_at FROM roles ORDER BY user_name, role, channel",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut by_user: HashMap<String, Vec<RoleRow>> = HashMap::new();
        for r in &roles {
            by_user.entry(r.get(0)).or_default().push(RoleRow {
                role: r.get(1),
                channel: r.get(2),
                limit: r.get(3),
                granted_by: r.get(4),
                granted_at: r.get(5),
                reason: r.get(6),
                last_used_at: r.get(7),
            });
        }
        Ok(users
            .iter()
            .map(|u| {
                let name: String = u.get(0);
                UserRow {
                    roles: by_user.remove(&name).unwrap_or_default(),
                    name,
                    uid: u.get(1),
                    system: u.get::<i64, _>(2) != 0,
                    created_at: u.get(3),
                    created_by: u.get(4),
                    disabled_at: u.get(5),
                }
            })
            .collect())
    }

    /// Every user as the policy sees them (one read of users and roles).
    pub async fn people(&self) -> Result<Vec<Person>, StoreError> {
        Ok(self
            .users()
            .await?
            .into_iter()
            .map(|u| Person {
                standing: if u.disabled_at.is_some() {
                    Standing::Disabled
                } else {
                    Standing::Active
                },
                grants: u
                    .roles
                    .into_iter()
                    .filter_map(|r| grant(&r.role, r.channel, r.limit))
                    .collect(),
                name: u.name,
            })
            .collect())
    }

    /// Records that a permission review was done (who, when, what it found).
    pub async fn record_review(
        &self,
        reviewer: &str,
        unused_days: u32,
        roles: usize,
        flagged: usize,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO reviews (reviewer, at, unused_days, roles, flagged) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(reviewer)
        .bind(ts(at))
        .bind(i64::from(unused_days))
        .bind(roles as i64)
        .bind(flagged as i64)
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            at,
            reviewer,
            "users.reviewed",
            None,
            &format!("roles={roles} flagged={flagged} unused_days={unused_days}"),
        )
        .await?;
        self.commit(tx).await
    }

    /// The last permission review: who and when.
    pub async fn last_review(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(
            sqlx::query("SELECT reviewer, at FROM reviews ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?
                .map(|r| (r.get(0), r.get(1))),
        )
    }

    /// Whether a claim name was recorded (a restart continues it, whoever owns the file now).
    pub async fn claim_recorded(&self, claim: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM files WHERE claim = $1")
            .bind(claim)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The policy's decision for a validated batch: the facts are looked up and the decision
    /// applied in one transaction, so that two batches never both fit under a daily limit
    /// only one of them fits under.
    pub async fn decide_intake(
        &self,
        batch: i64,
        q: &IntakeQuery,
        decide: impl FnOnce(&IntakeFacts) -> Decision,
        at: DateTime<Utc>,
    ) -> Result<Option<Decision>, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
        )))
        .bind(batch)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NoSuchBatch(batch))?;
        let row = batch_row(&row)?;
        if row.state != BatchState::AwaitingApproval || row.approvals_required.is_some() {
            // Decided meanwhile (the start's recovery and a pickup may both try): nothing to do.
            return Ok(None);
        }
        let mut facts = IntakeFacts {
            totals: totals(&mut tx, batch).await?,
            ..IntakeFacts::default()
        };
        if let Some(day) = q.channel_day {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT p.currency, CAST(SUM(p.amount_minor) AS BIGINT) FROM payments p JOIN batches b ON b.id = p.batch_id
                 WHERE b.channel = $1 AND b.id <> $2 AND b.created_at >= $3 AND b.state IN {PAYING} GROUP BY p.currency"
            )))
            .bind(&q.channel)
            .bind(batch)
            .bind(ts(day))
            .fetch_all(&mut *tx)
            .await?;
            facts.channel_today = sums(&r)?;
        }
        if let Some(day) = q.account_day {
            let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT p.currency, CAST(SUM(p.amount_minor) AS BIGINT) FROM payments p JOIN batches b ON b.id = p.batch_id
                 WHERE b.debtor_account = $1 AND b.id <> $2 AND b.created_at >= $3 AND b.state IN {PAYING} GROUP BY p.currency"
            )))
            .bind(&q.debtor_account)
            .bind(batch)
            .bind(ts(day))
            .fetch_all(&mut *tx)
            .await?;
            facts.account_today = sums(&r)?;
        }
        facts.scrutiny = self
            .scrutiny(&mut tx, batch, &row.payment_count, q, &facts.totals)
            .await?;
        let decision = decide(&facts);
        let (required, reasons) = match &decision {
            Decision::Declined { message, .. } => (None, vec![message.clone()]),
            Decision::Approved { reason } => (Some(0), vec![reason.clone()]),
            Decision::Awaiting { required, reasons } => (Some(*required), reasons.clone()),
        };
        sqlx::query(
            "UPDATE batches SET approvals_required = $1, approval_reasons = $2, debtor_account = $3 WHERE id = $4",
        )
        // A declined batch is decided too: 0 approvals will ever count.
        .bind(i64::from(required.unwrap_or(0)))
        .bind(serde_json::to_string(&reasons).unwrap_or_default())
        .bind(&q.debtor_account)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        match &decision {
            Decision::Declined { limit, message } => {
                let next = row.state.on(&Event::Declined)?;
                move_batch(
                    &mut tx,
                    batch,
                    row.state,
                    next,
                    "declined",
                    Some("paygate:policy"),
                    at,
                )
                .await?;
                append_audit(
                    &mut tx,
                    at,
                    "paygate:policy",
                    "batch.declined",
                    Some(batch),
                    &format!("hard limit {limit}: {message}"),
                )
                .await?;
            }
            Decision::Approved { reason } => {
                let event = Event::Approved {
                    policy_satisfied: true,
                };
                let next = row.state.on(&event)?;
                move_batch(
                    &mut tx,
                    batch,
                    row.state,
                    next,
                    event.name(),
                    Some("paygate:auto-approval"),
                    at,
                )
                .await?;
                append_audit(
                    &mut tx,
                    at,
                    "paygate:auto-approval",
                    "batch.approved",
                    Some(batch),
                    reason,
                )
                .await?;
            }
            Decision::Awaiting { required, reasons } => {
                append_audit(
                    &mut tx,
                    at,
                    "paygate:policy",
                    "approval.required",
                    Some(batch),
                    &format!("approvals={required}; {}", reasons.join("; ")),
                )
                .await?;
            }
        }
        self.commit(tx).await?;
        Ok(Some(decision))
    }

    async fn scrutiny(
        &self,
        tx: &mut AnyConnection,
        batch: i64,
        count: &i64,
        q: &IntakeQuery,
        this_totals: &[Money],
    ) -> Result<ScrutinyFacts, StoreError> {
        let mut s = ScrutinyFacts::default();
        if q.new_beneficiary {
            const NEW: &str = "FROM payments p WHERE p.batch_id = $1 AND NOT EXISTS
                 (SELECT 1 FROM payee_lookup y WHERE y.channel = $2 AND y.account_hmac = p.account_hmac)";
            s.new_payee_count = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(DISTINCT p.account_hmac) {NEW}"
            )))
            .bind(batch)
            .bind(&q.channel)
            .fetch_one(&mut *tx)
            .await?
            .get::<i64, _>(0) as u64;
            if s.new_payee_count > 0 {
                // Named masked: the reasons go into the batch's record and the audit trail.
                let keys = self.keys()?;
                for r in sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT p.row_no, {} {NEW} ORDER BY p.row_no LIMIT 3",
                    payee_columns("p")
                )))
                .bind(batch)
                .bind(&q.channel)
                .fetch_all(&mut *tx)
                .await?
                {
                    let row_no: i64 = r.get(0);
                    let account = super::payee_at(keys, &r, 1, batch, row_no)?.account;
                    s.new_payees.push((row_no, crate::model::mask(&account)));
                }
            }
        }
        if let Some(f) = q.outlier_factor {
            // amount > f × largest, in integers: amount × 10^scale > mantissa × largest.
            let f = f.round_dp(4).normalize();
            let (num, den) = (f.mantissa() as i64, 10i64.pow(f.scale()));
            const OUT: &str = "FROM payments p JOIN payee_lookup y ON y.channel = $2 AND y.account_hmac = p.account_hmac AND y.currency = p.currency
                 WHERE p.batch_id = $1 AND p.amount_minor * $3 > y.max_amount_minor * $4";
            s.outlier_count = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {OUT}")))
                .bind(batch)
                .bind(&q.channel)
                .bind(den)
                .bind(num)
                .fetch_one(&mut *tx)
                .await?
                .get::<i64, _>(0) as u64;
            if s.outlier_count > 0 {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT p.row_no, p.amount_minor, p.currency, y.max_amount_minor {OUT} ORDER BY p.row_no LIMIT 3"
                )))
                .bind(batch)
                .bind(&q.channel)
                .bind(den)
                .bind(num)
                .fetch_all(&mut *tx)
                .await?;
                for r in rows {
                    let c: String = r.get(2);
                    if let Ok(c) = c.parse() {
                        s.outliers.push((
                            r.get(0),
                            Money::from_minor_units(r.get(1), c),
                            Money::from_minor_units(r.get(3), c),
                        ));
                    }
                }
            }
        }
        if let Some(since) = q.duplicates_since {
            let since = ts(since);
            let candidates: Vec<i64> = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM batches WHERE channel = $1 AND id <> $2 AND created_at >= $3 AND payment_count = $4 AND state IN {PAYING} ORDER BY id"
            )))
            .bind(&q.channel)
            .bind(batch)
            .bind(&since)
            .bind(count)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            for b in candidates {
                if totals(tx, b).await? == this_totals {
                    s.duplicate_batches.push(b);
                }
            }
            // Payments like an earlier one: the recent ones are few enough to hold in memory.
            let recent = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT p.account_hmac, p.amount_minor, p.currency, p.batch_id, p.row_no, {} FROM payments p JOIN batches b ON b.id = p.batch_id
                 WHERE b.channel = $1 AND b.id <> $2 AND b.created_at >= $3 AND b.state IN {PAYING}",
                payee_columns("p")
            )))
            .bind(&q.channel)
            .bind(batch)
            .bind(&since)
            .fetch_all(&mut *tx)
            .await?;
            if !recent.is_empty() {
                // The account by its keyed hash, the reference decrypted and normalized.
                let keys = self.keys()?;
                let key =
                    |r: &sqlx::any::AnyRow| -> Result<(Vec<u8>, i64, String, String), StoreError> {
                        let payee = super::payee_at(keys, r, 5, r.get(3), r.get(4))?;
                        Ok((
                            r.get::<Option<Vec<u8>>, _>(0).unwrap_or_default(),
                            r.get(1),
                            r.get(2),
                            approval::normalize_key(payee.remittance.as_deref().unwrap_or("")),
                        ))
                    };
                let mut earlier: HashMap<_, i64> = HashMap::with_capacity(recent.len());
                for r in &recent {
                    earlier.insert(key(r)?, r.get(3));
                }
                let mine = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT p.account_hmac, p.amount_minor, p.currency, p.batch_id, p.row_no, {} FROM payments p WHERE p.batch_id = $1 ORDER BY p.row_no",
                    payee_columns("p")
                )))
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
                for r in &mine {
                    if let Some(b) = earlier.get(&key(r)?) {
                        s.duplicate_payment_count += 1;
                        if s.duplicate_payments.len() < 3 {
                            s.duplicate_payments.push((r.get(4), *b));
                        }
                    }
                }
            }
        }
        Ok(s)
    }

    /// Records an approval: the approver's role, limit and segregation of duties are checked
    /// in the same transaction; with enough distinct approvals the batch moves to `approved`.
    pub async fn approve(
        &self,
        batch: i64,
        approver: &str,
        comment: Option<&str>,
        expire_after: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<super::Approved, AccessError> {
        let mut tx = self.begin().await?;
        let (row, facts) = approval_facts(&mut tx, batch).await?;
        // Past its expiry the batch takes no approval, even before the scheduler expires it.
        let since: Option<String> = sqlx::query(
            "SELECT at FROM state_history WHERE batch_id = $1 AND payment_id IS NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(batch)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get(0));
        if let Some(since) = since.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            && at >= since.with_timezone(&Utc) + expire_after
        {
            return Err(AccessError::NotAwaiting {
                batch,
                state: BatchState::Expired,
            });
        }
        let me = load_person(&mut tx, approver).await?;
        let g = match approval::may_approve(&me, &facts) {
            Ok(g) => g.clone(),
            Err(r) => {
                drop(tx);
                let _ = self
                    .audit_event(approver, "approval.refused", Some(batch), &r.to_string())
                    .await;
                return Err(r.into());
            }
        };
        let required = row.approvals_required.unwrap_or(1).max(1) as u32;
        sqlx::query(
            "INSERT INTO approvals (batch_id, approver, at, comment) VALUES ($1, $2, $3, $4)",
        )
        .bind(batch)
        .bind(approver)
        .bind(ts(at))
        .bind(comment)
        .execute(&mut *tx)
        .await?;
        touch(&mut tx, approver, &g, at).await?;
        // Approvals count while their givers still hold the role: a revoked or disabled
        // approver's earlier approval no longer does.
        let mut count = 1u32;
        for earlier in &facts.approved_by {
            let p = load_person(&mut tx, earlier).await?;
            if p.grant(Role::Approver, &facts.channel).is_some() {
                count += 1;
            }
        }
        let event = Event::Approved {
            policy_satisfied: count >= required,
        };
        let next = row.state.on(&event).map_err(StoreError::from)?;
        if next != row.state {
            move_batch(
                &mut tx,
                batch,
                row.state,
                next,
                event.name(),
                Some(approver),
                at,
            )
            .await?;
        }
        append_audit(
            &mut tx,
            at,
            approver,
            "batch.approved",
            Some(batch),
            &format!(
                "approval {count} of {required}; {} -> {next}; role=approver channel={} comment={}",
                row.state,
                g.channel,
                comment.unwrap_or("-")
            ),
        )
        .await?;
        self.commit(tx).await?;
        Ok(super::Approved {
            batch,
            state: next,
            approvals: count,
            required,
        })
    }

    /// An approver declines a batch waiting for approval; it is never sent.
    pub async fn decline(
        &self,
        batch: i64,
        by: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<BatchState, AccessError> {
        let mut tx = self.begin().await?;
        let (row, facts) = approval_facts(&mut tx, batch).await?;
        let me = load_person(&mut tx, by).await?;
        let g = match approval::authorize(
            &me,
            Role::Approver,
            &facts.channel,
            &format!("decline batch {batch}"),
        ) {
            Ok(g) => g.clone(),
            Err(r) => {
                drop(tx);
                let _ = self
                    .audit_event(by, "approval.refused", Some(batch), &r.to_string())
                    .await;
                return Err(r.into());
            }
        };
        let next = row.state.on(&Event::Declined).map_err(StoreError::from)?;
        move_batch(&mut tx, batch, row.state, next, "declined", Some(by), at).await?;
        touch(&mut tx, by, &g, at).await?;
        append_audit(
            &mut tx,
            at,
            by,
            "batch.declined",
            Some(batch),
            &format!("reason={reason}"),
        )
        .await?;
        self.commit(tx).await?;
        Ok(next)
    }

    /// Batches waiting for approval, with what each still needs and why.
    pub async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE state = 'awaiting_approval' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        let mut c = self.pool.acquire().await?;
        for r in &rows {
            let b = batch_row(r)?;
            let approved_by =
                sqlx::query("SELECT approver FROM approvals WHERE batch_id = $1 ORDER BY id")
                    .bind(b.id)
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
            let file: String = sqlx::query("SELECT name FROM files WHERE id = $1")
                .bind(b.file_id)
                .fetch_one(&mut *c)
                .await?
                .get(0);
            let waiting_since: String = sqlx::query(
                "SELECT at FROM state_history WHERE batch_id = $1 AND payment_id IS NULL ORDER BY id DESC LIMIT 1",
            )
            .bind(b.id)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.get(0))
            .unwrap_or_else(|| b.created_at.clone());
            out.push(Pending {
                batch: b.id,
                totals: totals(&mut c, b.id).await?,
                channel: b.channel,
                submitter: b.submitter,
                dropped_by: b.dropped_by,
                file,
                payments: b.payment_count,
                required: b.approvals_required.unwrap_or(1).max(1) as u32,
                approved_by,
                reasons: b.approval_reasons,
                waiting_since,
            });
        }
        Ok(out)
    }

    /// The audit trail, filtered, with the chain hashes (for `paygate audit` and its export).
    pub async fn audit_records(
        &self,
        batch: Option<i64>,
        actor: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, batch_id, details, prev_hash, hash FROM audit
             WHERE ($1 IS NULL OR batch_id = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR at >= $3)
             ORDER BY seq",
        )
        .bind(batch)
        .bind(actor)
        .bind(since.map(ts))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                action: r.get(3),
                batch: r.get(4),
                details: r.get(5),
                prev_hash: r.get(6),
                hash: r.get(7),
            })
            .collect())
    }
}

async fn approval_facts(
    tx: &mut AnyConnection,
    batch: i64,
) -> Result<(super::BatchRow, BatchFacts), AccessError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"
    )))
    .bind(batch)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AccessError::NoSuchBatch(batch))?;
    let row = batch_row(&row)?;
    if row.state != BatchState::AwaitingApproval || row.approvals_required.is_none() {
        return Err(AccessError::NotAwaiting {
            batch,
            state: row.state,
        });
    }
    let approved_by = sqlx::query("SELECT approver FROM approvals WHERE batch_id = $1 ORDER BY id")
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let facts = BatchFacts {
        id: batch,
        channel: row.channel.clone(),
        submitter: row.submitter.clone(),
        dropped_by: row.dropped_by.clone(),
        totals: totals(tx, batch).await?,
        approved_by,
    };
    Ok((row, facts))
}

impl Store {
    /// The enabled users who hold the approver role on `channel` (or on every channel).
    pub async fn approvers_of(&self, channel: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query(
            "SELECT DISTINCT r.user_name FROM roles r JOIN users u ON u.name = r.user_name
             WHERE r.role = 'approver' AND (r.channel = $1 OR r.channel = '*') AND u.disabled_at IS NULL ORDER BY 1",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
    }
}

/// `PAYEE_COLUMNS` of the table aliased `alias`.
fn payee_columns(alias: &str) -> String {
    super::PAYEE_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records the payees of a batch that was sent (inside `mark_sent`'s transaction): first
/// payment and largest amount per channel, account and currency.
pub(super) async fn record_payees(
    tx: &mut AnyConnection,
    batch: i64,
    channel: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let max = super::Backend::of(tx).greatest();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payee_lookup (channel, account_hmac, currency, max_amount_minor, first_batch, first_paid_at, last_paid_at)
         SELECT $1, account_hmac, currency, MAX(amount_minor), $2, $3, $3 FROM payments WHERE batch_id = $2 GROUP BY account_hmac, currency
         ON CONFLICT (channel, account_hmac, currency) DO UPDATE SET
             max_amount_minor = {max}(payee_lookup.max_amount_minor, excluded.max_amount_minor), last_paid_at = excluded.last_paid_at"
    )))
    .bind(channel)
    .bind(batch)
    .bind(ts(at))
    .execute(&mut *tx)
    .await?;
    Ok(())
}
