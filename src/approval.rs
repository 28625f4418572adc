//! Approval policy, pure: who may do what (roles scoped to channels), how many approvals a
//! batch needs and why (tiers, scrutiny), the hard limits no approval overrides, and when a
//! waiting batch expires. It takes values and returns decisions; it never reads the store, the
//! clock or a file. The store loads the facts and applies the decision in one transaction.

use crate::config::{AmountLimit, Approval, Tier};
use crate::model::{Currency, Money};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::fmt;

/// Every channel: a role granted on `*`.
pub const ANY_CHANNEL: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Files from this user are accepted in the channel.
    Submitter,
    /// May approve or decline the channel's batches (within a personal limit, if any).
    Approver,
    /// Users, roles, reload, re-admission. Approving needs the approver role too.
    Admin,
    /// Read-only: batches, users and roles, the audit trail and its exports.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Submitter, Role::Approver, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role a user holds, on one channel or on `*`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grant {
    pub role: Role,
    pub channel: String,
    /// An approver's personal limit per batch (in each of the batch's currencies).
    #[serde(serialize_with = "limit_text")]
    pub limit: Option<AmountLimit>,
}

fn limit_text<S: serde::Serializer>(l: &Option<AmountLimit>, s: S) -> Result<S::Ok, S::Error> {
    match l {
        Some(l) => s.serialize_some(&l.to_string()),
        None => s.serialize_none(),
    }
}

impl Grant {
    pub fn covers(&self, channel: &str) -> bool {
        self.channel == ANY_CHANNEL || self.channel == channel
    }
}

/// Whether paygate knows a user and lets them act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// Never added with `paygate users add`.
    Unknown,
    Disabled,
    Active,
}

/// A user as the policy sees them: their name, their standing, their roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub name: String,
    /// Unknown or disabled: holds no role, whatever the grants say.
    pub standing: Standing,
    pub grants: Vec<Grant>,
}

impl Person {
    /// The grant that gives `role` on `channel`: the channel's own grant before a `*` one.
    pub fn grant(&self, role: Role, channel: &str) -> Option<&Grant> {
        if self.standing != Standing::Active {
            return None;
        }
        let mut on_any = None;
        for g in self.grants.iter().filter(|g| g.role == role) {
            if g.channel == channel {
                return Some(g);
            }
            if g.channel == ANY_CHANNEL {
                on_any = Some(g);
            }
        }
        on_any
    }
}

/// Why the policy refuses someone. The messages name the role that is missing and how to get it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{user} is not a paygate user (an admin adds them: paygate users add {user})")]
    Unknown { user: String },
    #[error("{user} is disabled in paygate")]
    Disabled { user: String },
    #[error(
        "{user} may not {action}: that needs the `{role}` role on channel `{channel}` (an admin grants it: paygate users grant {user} {role} --channel {channel})"
    )]
    MissingRole {
        user: String,
        role: Role,
        channel: String,
        action: String,
    },
    #[error("{user} submitted batch {batch} and cannot approve it (maker-checker)")]
    OwnBatch { user: String, batch: i64 },
    #[error("{user} has already approved batch {batch}; another person must approve it")]
    AlreadyApproved { user: String, batch: i64 },
    #[error(
        "{user}'s approval limit ({limit}) is below batch {batch}'s total {total}: an approver with a higher limit must approve it"
    )]
    OverPersonalLimit {
        user: String,
        batch: i64,
        limit: String,
        total: String,
    },
    #[error("nobody grants themselves a role: another admin must grant `{role}` to {user}")]
    SelfGrant { user: String, role: Role },
    #[error(
        "{user} is a system identity (a channel's submitter): it can hold only the submitter role"
    )]
    SystemUser { user: String },
}

/// `person` may do `action`, which needs `role` on `channel`. Returns the grant used.
pub fn authorize<'a>(
    person: &'a Person,
    role: Role,
    channel: &str,
    action: &str,
) -> Result<&'a Grant, Refusal> {
    let user = person.name.clone();
    person.grant(role, channel).ok_or(match person.standing {
        Standing::Unknown => Refusal::Unknown { user },
        Standing::Disabled => Refusal::Disabled { user },
        Standing::Active => Refusal::MissingRole {
            user,
            role,
            channel: channel.into(),
            action: action.into(),
        },
    })
}

/// `person` holds one of `roles` on some channel (read-only requests: status, users, audit).
pub fn any_of<'a>(person: &'a Person, roles: &[Role], action: &str) -> Result<&'a Grant, Refusal> {
    let user = person.name.clone();
    match person.standing {
        Standing::Unknown => return Err(Refusal::Unknown { user }),
        Standing::Disabled => return Err(Refusal::Disabled { user }),
        Standing::Active => {}
    }
    for r in roles {
        if let Some(g) = person.grants.iter().find(|g| g.role == *r) {
            return Ok(g);
        }
    }
    Err(Refusal::MissingRole {
        user,
        role: roles.first().copied().unwrap_or(Role::Admin),
        channel: ANY_CHANNEL.into(),
        action: format!(
            "{action} (roles that may: {})",
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Whether a user's OS account is still the one that was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsAccount {
    Present,
    /// The account no longer exists.
    Missing,
    /// An account of that name exists with another uid: not the person who was added.
    UidChanged,
    /// A system identity (a channel's configured submitter) has no account.
    NotNeeded,
}

impl OsAccount {
    pub fn as_str(self) -> &'static str {
        match self {
            OsAccount::Present => "present",
            OsAccount::Missing => "missing",
            OsAccount::UidChanged => "uid changed",
            OsAccount::NotNeeded => "system identity",
        }
    }
}

/// One user, for the permission review.
#[derive(Debug, Clone)]
pub struct ReviewInput {
    pub user: String,
    pub disabled: bool,
    pub os_account: OsAccount,
    pub roles: Vec<ReviewRole>,
}

#[derive(Debug, Clone)]
pub struct ReviewRole {
    pub role: String,
    pub channel: String,
    pub limit: Option<String>,
    pub granted_by: String,
    pub granted_at: String,
    pub last_used_at: Option<String>,
}

/// One line of the review: who holds which role where, granted by whom and when, last used
/// when, and what deserves a look.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReviewLine {
    pub user: String,
    pub role: Option<String>,
    pub channel: Option<String>,
    pub limit: Option<String>,
    pub granted_by: Option<String>,
    pub granted_at: Option<String>,
    pub last_used_at: Option<String>,
    pub flags: Vec<String>,
}

/// The periodic permission review: every role, flagged when unused for `unused_days` (or
/// never used since granted that long ago), when the OS account is gone or is someone else
/// now, or when the user is disabled yet still holds it. Users without roles are listed too.
pub fn review(users: &[ReviewInput], now: DateTime<Utc>, unused_days: u32) -> Vec<ReviewLine> {
    let cutoff = now - chrono::Duration::days(i64::from(unused_days));
    let old = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc) < cutoff)
            .unwrap_or(true)
    };
    let mut lines = Vec::new();
    for u in users {
        let mut user_flags = Vec::new();
        match u.os_account {
            OsAccount::Missing => user_flags.push("OS account no longer exists".to_string()),
            OsAccount::UidChanged => user_flags.push(
                "the OS account of this name has another uid now: not the person who was added"
                    .to_string(),
            ),
            OsAccount::Present | OsAccount::NotNeeded => {}
        }
        if u.disabled {
            user_flags.push("disabled".to_string());
        }
        if u.roles.is_empty() {
            lines.push(ReviewLine {
                user: u.user.clone(),
                role: None,
                channel: None,
                limit: None,
                granted_by: None,
                granted_at: None,
                last_used_at: None,
                flags: user_flags.clone(),
            });
        }
        for r in &u.roles {
            let mut flags = user_flags.clone();
            match &r.last_used_at {
                Some(t) if old(t) => flags.push(format!("not used for {unused_days} days")),
                None if old(&r.granted_at) => flags.push(format!(
                    "never used since granted over {unused_days} days ago"
                )),
                _ => {}
            }
            lines.push(ReviewLine {
                user: u.user.clone(),
                role: Some(r.role.clone()),
                channel: Some(r.channel.clone()),
                limit: r.limit.clone(),
                granted_by: Some(r.granted_by.clone()),
                granted_at: Some(r.granted_at.clone()),
                last_used_at: r.last_used_at.clone(),
                flags,
            });
        }
    }
    lines
}

/// What the policy needs to know about a batch someone wants to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchFacts {
    pub id: i64,
    pub channel: String,
    pub submitter: Option<String>,
    /// Whoever dropped the file, when the channel records a configured submitter.
    pub dropped_by: Option<String>,
    /// Total per currency.
    pub totals: Vec<Money>,
    /// Who approved it so far.
    pub approved_by: Vec<String>,
}

/// Segregation of duties for one approval (or decline): the approver role on the batch's
/// channel, never the submitter, one person once, and the approver's personal limit.
pub fn may_approve<'a>(person: &'a Person, batch: &BatchFacts) -> Result<&'a Grant, Refusal> {
    let grant = authorize(
        person,
        Role::Approver,
        &batch.channel,
        &format!("approve batch {}", batch.id),
    )?;
    if batch.submitter.as_deref() == Some(person.name.as_str())
        || batch.dropped_by.as_deref() == Some(person.name.as_str())
    {
        return Err(Refusal::OwnBatch {
            user: person.name.clone(),
            batch: batch.id,
        });
    }
    if batch.approved_by.iter().any(|a| a == &person.name) {
        return Err(Refusal::AlreadyApproved {
            user: person.name.clone(),
            batch: batch.id,
        });
    }
    if let Some(limit) = &grant.limit {
        for total in &batch.totals {
            let within = limit
                .for_currency(total.currency())
                .is_some_and(|l| total.amount() <= l);
            if !within {
                return Err(Refusal::OverPersonalLimit {
                    user: person.name.clone(),
                    batch: batch.id,
                    limit: limit.to_string(),
                    total: total.to_string(),
                });
            }
        }
    }
    Ok(grant)
}

/// `actor` grants or revokes `role` on `channel` for `target`: an admin whose scope covers the
/// channel (`*` for admin on `*`), never for themselves.
pub fn may_change_role(
    actor: &Person,
    target: &str,
    role: Role,
    channel: &str,
    verb: &str,
) -> Result<(), Refusal> {
    if verb == "grant" && actor.name == target {
        return Err(Refusal::SelfGrant {
            user: target.into(),
            role,
        });
    }
    authorize(
        actor,
        Role::Admin,
        channel,
        &format!("{verb} the {role} role on channel `{channel}`"),
    )
    .map(|_| ())
}

/// The hard limits of one batch, from the config.
#[derive(Debug, Clone, Default)]
pub struct HardLimits {
    pub max_batch_total: Option<AmountLimit>,
    pub max_daily_total: Option<AmountLimit>,
    /// The debtor account's `max_daily_total` in its currency (summed over every channel
    /// paying from it).
    pub max_daily_per_account: Option<Money>,
    /// The debtor account's name in the config, for the message.
    pub account: String,
    /// Config key prefix of the channel (`channels.NAME`), for the message.
    pub channel_key: String,
}

/// What the store found about a batch when it came in, for the policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntakeFacts {
    /// This batch's total per currency.
    pub totals: Vec<Money>,
    /// What the channel already pays today (other batches, not declined, expired or rejected).
    pub channel_today: Vec<Money>,
    /// What the debtor account already pays today, over every channel.
    pub account_today: Vec<Money>,
    pub scrutiny: ScrutinyFacts,
}

/// Scrutiny findings; each non-empty kind adds one required approval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrutinyFacts {
    /// Payee accounts never paid from this channel: (spreadsheet row, account), a few examples.
    pub new_payees: Vec<(i64, String)>,
    pub new_payee_count: u64,
    /// Earlier batches of the channel with the same count and totals.
    pub duplicate_batches: Vec<i64>,
    /// Payments like an earlier one (same account, amount and reference): (row, earlier batch).
    pub duplicate_payments: Vec<(i64, i64)>,
    pub duplicate_payment_count: u64,
    /// Payments far above the payee's largest earlier one: (row, amount, largest before).
    pub outliers: Vec<(i64, Money, Money)>,
    pub outlier_count: u64,
}

/// What happens to a batch that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Over a hard limit: declined, whatever the approvals. `limit` is the config key.
    Declined { limit: String, message: String },
    /// Under `auto_below` with nothing for scrutiny.
    Approved { reason: String },
    /// Waits for `required` distinct approvers; `reasons` say why that many.
    Awaiting { required: u32, reasons: Vec<String> },
}

fn over(limit: &AmountLimit, m: &Money) -> Option<Decimal> {
    // A currency a per-currency limit does not list has no limit (as for max_amount).
    limit.for_currency(m.currency()).filter(|l| m.amount() > *l)
}

fn sum(a: &[Money], b: &[Money], c: Currency) -> Decimal {
    a.iter()
        .chain(b)
        .filter(|m| m.currency() == c)
        .map(|m| m.amount())
        .sum()
}

fn show(d: Decimal, c: Currency) -> String {
    Money::new(d, c)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| format!("{d} {c}"))
}

/// The hard limits no approval overrides, then tiers and scrutiny.
pub fn decide(approval: &Approval, limits: &HardLimits, facts: &IntakeFacts) -> Decision {
    let key = &limits.channel_key;
    for t in &facts.totals {
        if let Some(l) = limits.max_batch_total.as_ref().and_then(|l| over(l, t)) {
            return Decision::Declined {
                limit: format!("{key}.limits.max_batch_total"),
                message: format!(
                    "the batch total {t} is over the channel's limit of {} per batch ({key}.limits.max_batch_total)",
                    show(l, t.currency())
                ),
            };
        }
        let c = t.currency();
        if let Some(l) = &limits.max_daily_total
            && let Some(lim) = l.for_currency(c)
        {
            let day = sum(std::slice::from_ref(t), &facts.channel_today, c);
            if day > lim {
                return Decision::Declined {
                    limit: format!("{key}.limits.max_daily_total"),
                    message: format!(
                        "with this batch the channel would pay {} today, over its daily limit of {} ({key}.limits.max_daily_total; {} already today)",
                        show(day, c),
                        show(lim, c),
                        show(sum(&[], &facts.channel_today, c), c)
                    ),
                };
            }
        }
        if let Some(lim) = limits
            .max_daily_per_account
            .filter(|l| l.currency() == c)
            .map(|l| l.amount())
        {
            let day = sum(std::slice::from_ref(t), &facts.account_today, c);
            if day > lim {
                let acct = &limits.account;
                return Decision::Declined {
                    limit: format!("company.accounts.{acct}.max_daily_total"),
                    message: format!(
                        "with this batch account `{acct}` would pay {} today, over its daily limit of {} (company.accounts.{acct}.max_daily_total; {} already today)",
                        show(day, c),
                        show(lim, c),
                        show(sum(&[], &facts.account_today, c), c)
                    ),
                };
            }
        }
    }

    let mut reasons = Vec::new();
    let auto = match &approval.auto_below {
        Some(limit) if !facts.totals.is_empty() => facts.totals.iter().all(|t| {
            limit
                .for_currency(t.currency())
                .is_some_and(|l| t.amount() < l)
        }),
        _ => false,
    };
    let totals = facts
        .totals
        .iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut required = if auto { 0 } else { approval.required };
    if !auto {
        match tier_for(&approval.tiers, &facts.totals) {
            Some((t, m)) if t.required > required => {
                required = t.required;
                reasons.push(format!(
                    "{} approvals: the total {m} is above {}",
                    t.required,
                    t.above
                        .for_currency(m.currency())
                        .map(|l| show(l, m.currency()))
                        .unwrap_or_else(|| "the tier (its currency is not listed)".into())
                ));
            }
            _ => reasons.push(format!(
                "{required} approval{}: the channel's rule for a total of {totals}",
                if required == 1 { "" } else { "s" }
            )),
        }
    }
    let s = &facts.scrutiny;
    let mut extra = Vec::new();
    if s.new_payee_count > 0 {
        extra.push(format!(
            "+1 new beneficiary: {} payee account{} never paid from this channel ({})",
            s.new_payee_count,
            if s.new_payee_count == 1 { "" } else { "s" },
            examples(
                s.new_payees.iter().map(|(r, a)| format!("row {r}: {a}")),
                s.new_payee_count
            )
        ));
    }
    if !s.duplicate_batches.is_empty() {
        extra.push(format!(
            "+1 possible duplicate batch: same payment count and total as batch {}",
            s.duplicate_batches
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if s.duplicate_payment_count > 0 {
        extra.push(format!(
            "+1 possible duplicate payment: {} payment{} with the same account, amount and reference as an earlier batch ({})",
            s.duplicate_payment_count,
            if s.duplicate_payment_count == 1 { "" } else { "s" },
            examples(
                s.duplicate_payments
                    .iter()
                    .map(|(r, b)| format!("row {r} like batch {b}")),
                s.duplicate_payment_count
            )
        ));
    }
    if s.outlier_count > 0 {
        extra.push(format!(
            "+1 unusual amount: {} payment{} far above the payee's largest earlier payment ({})",
            s.outlier_count,
            if s.outlier_count == 1 { "" } else { "s" },
            examples(
                s.outliers
                    .iter()
                    .map(|(r, m, was)| format!("row {r}: {m}, largest before {was}")),
                s.outlier_count
            )
        ));
    }
    if required == 0 && extra.is_empty() {
        return Decision::Approved {
            reason: format!(
                "the total {totals} is under the channel's auto_below and nothing needs scrutiny"
            ),
        };
    }
    if required == 0 {
        reasons.push(format!(
            "the total {totals} is under auto_below, but scrutiny asks for a person"
        ));
    }
    required += extra.len() as u32;
    reasons.extend(extra);
    Decision::Awaiting { required, reasons }
}

fn examples(items: impl Iterator<Item = String>, count: u64) -> String {
    let shown: Vec<String> = items.take(3).collect();
    let more = count.saturating_sub(shown.len() as u64);
    if more > 0 {
        format!("{} and {more} more", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// The highest tier (by `required`) whose threshold a currency total passes.
fn tier_for<'a>(tiers: &'a [Tier], totals: &[Money]) -> Option<(&'a Tier, Money)> {
    let mut best: Option<(&Tier, Money)> = None;
    for t in tiers {
        for m in totals {
            // A currency the tier does not list counts as above it: the stricter reading.
            let above = t
                .above
                .for_currency(m.currency())
                .is_none_or(|l| m.amount() > l);
            if above && best.as_ref().is_none_or(|(b, _)| t.required > b.required) {
                best = Some((t, *m));
            }
        }
    }
    best
}

/// A batch waiting since `since` has expired at `now` (at the boundary exactly: expired).
pub fn expired(since: DateTime<Utc>, now: DateTime<Utc>, approval: &Approval) -> bool {
    now >= expires_at(since, approval)
}

pub fn expires_at(since: DateTime<Utc>, approval: &Approval) -> DateTime<Utc> {
    since + approval.expire_after()
}

/// An account number or reference as compared for scrutiny: full-width forms folded to ASCII,
/// spaces dropped, upper case (`ｄｅ８９ ３７０４…` and `DE89 3704…` are the same account).
pub fn normalize_key(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
            c => c,
        })
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect()
}

#[cfg(test)]
mod tests;
