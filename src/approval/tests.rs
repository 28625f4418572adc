//! Table-driven tests of the policy: tiers, hard limits, segregation of duties, scrutiny and
//! expiry at its boundary.

use super::*;
use crate::config::{Approval, Scrutiny, Tier};
use std::str::FromStr;

fn eur(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), "EUR".parse().unwrap()).unwrap()
}
fn jpy(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), "JPY".parse().unwrap()).unwrap()
}
fn lim(s: &str) -> AmountLimit {
    AmountLimit::parse(s).unwrap()
}

/// auto below 1,000; one approver up to 100,000; two above.
fn policy() -> Approval {
    Approval {
        auto_below: Some(lim("1000")),
        required: 1,
        tiers: vec![Tier {
            above: lim("100000"),
            required: 2,
        }],
        ..Approval::default()
    }
}

fn facts(totals: Vec<Money>) -> IntakeFacts {
    IntakeFacts {
        totals,
        ..IntakeFacts::default()
    }
}

fn required(d: &Decision) -> Option<u32> {
    match d {
        Decision::Awaiting { required, .. } => Some(*required),
        Decision::Approved { .. } => Some(0),
        Decision::Declined { .. } => None,
    }
}

#[test]
fn tiers_by_batch_total() {
    let cases: &[(&[Money], Option<u32>)] = &[
        (&[eur("999.99")], Some(0)),
        (&[eur("1000.00")], Some(1)),
        (&[eur("100000.00")], Some(1)),
        (&[eur("100000.01")], Some(2)),
        // Every currency must be under auto_below; the highest tier of any currency applies.
        (&[eur("10.00"), jpy("5000")], Some(1)),
        (&[eur("10.00"), jpy("200000")], Some(2)),
    ];
    for (totals, want) in cases {
        let d = decide(&policy(), &HardLimits::default(), &facts(totals.to_vec()));
        assert_eq!(required(&d), *want, "{totals:?}: {d:?}");
    }
}

#[test]
fn per_currency_thresholds_and_unlisted_currencies_are_strict() {
    let p = Approval {
        auto_below: Some(lim("EUR:1000")),
        required: 1,
        tiers: vec![Tier {
            above: lim("EUR:50000"),
            required: 3,
        }],
        ..Approval::default()
    };
    // JPY is listed in neither: no auto-approval, and the tier applies.
    let d = decide(&p, &HardLimits::default(), &facts(vec![jpy("10")]));
    assert_eq!(required(&d), Some(3), "{d:?}");
    let d = decide(&p, &HardLimits::default(), &facts(vec![eur("10")]));
    assert_eq!(required(&d), Some(0), "{d:?}");
}

#[test]
fn hard_limits_decline_with_the_limit_named() {
    let limits = HardLimits {
        max_batch_total: Some(lim("500000")),
        max_daily_total: Some(lim("EUR:800000")),
        max_daily_per_account: Some(eur("900000")),
        account: "eur".into(),
        channel_key: "channels.supplier".into(),
    };
    /// (batch totals, channel today, account today, the limit that declines it)
    type Case<'a> = (&'a [Money], &'a [Money], &'a [Money], Option<&'a str>);
    let cases: &[Case] = &[
        (&[eur("500000.00")], &[], &[], None),
        (
            &[eur("500000.01")],
            &[],
            &[],
            Some("channels.supplier.limits.max_batch_total"),
        ),
        (&[eur("400000")], &[eur("400000")], &[], None),
        (
            &[eur("400000")],
            &[eur("400000.01")],
            &[],
            Some("channels.supplier.limits.max_daily_total"),
        ),
        // JPY is not in the per-currency daily limit: it has none.
        (&[jpy("400000")], &[jpy("99999999")], &[], None),
        (
            &[eur("100")],
            &[],
            &[eur("899900.01")],
            Some("company.accounts.eur.max_daily_total"),
        ),
        (&[eur("100")], &[], &[eur("899900.00")], None),
        // The account's limit is in its own currency: other currencies are not summed into it.
        (&[jpy("400000")], &[], &[jpy("899900")], None),
    ];
    for (totals, channel_today, account_today, want) in cases {
        let f = IntakeFacts {
            totals: totals.to_vec(),
            channel_today: channel_today.to_vec(),
            account_today: account_today.to_vec(),
            ..IntakeFacts::default()
        };
        let d = decide(&policy(), &limits, &f);
        match (want, &d) {
            (Some(k), Decision::Declined { limit, message }) => {
                assert_eq!(limit, k, "{totals:?}");
                assert!(message.contains(k), "{message}");
            }
            (None, Decision::Declined { .. }) => panic!("{totals:?}: declined: {d:?}"),
            (Some(k), _) => panic!("{totals:?}: not declined by {k}: {d:?}"),
            (None, _) => {}
        }
    }
    // A limit holds however many approvals the batch could get: it is declined at intake.
    let f = facts(vec![eur("600000")]);
    assert!(matches!(
        decide(&policy(), &limits, &f),
        Decision::Declined { .. }
    ));
}

#[test]
fn each_kind_of_scrutiny_adds_one_approval_with_its_reason() {
    let base = ScrutinyFacts::default();
    let kinds: Vec<(ScrutinyFacts, &str)> = vec![
        (
            ScrutinyFacts {
                new_payees: vec![(2, "DE89370400440532013000".into())],
                new_payee_count: 1,
                ..base.clone()
            },
            "new beneficiary",
        ),
        (
            ScrutinyFacts {
                duplicate_batches: vec![7],
                ..base.clone()
            },
            "duplicate batch",
        ),
        (
            ScrutinyFacts {
                duplicate_payments: vec![(3, 7)],
                duplicate_payment_count: 1,
                ..base.clone()
            },
            "duplicate payment",
        ),
        (
            ScrutinyFacts {
                outliers: vec![(4, eur("9000"), eur("1000"))],
                outlier_count: 1,
                ..base.clone()
            },
            "unusual amount",
        ),
    ];
    for (s, reason) in &kinds {
        // Under auto_below, one finding makes it wait for one person.
        let mut f = facts(vec![eur("10")]);
        f.scrutiny = s.clone();
        let d = decide(&policy(), &HardLimits::default(), &f);
        assert_eq!(required(&d), Some(1), "{reason}: {d:?}");
        // Above the top tier: 2 + 1.
        f.totals = vec![eur("200000")];
        let d = decide(&policy(), &HardLimits::default(), &f);
        assert_eq!(required(&d), Some(3), "{reason}: {d:?}");
        let Decision::Awaiting { reasons, .. } = d else {
            unreachable!()
        };
        assert!(reasons.iter().any(|r| r.contains(reason)), "{reasons:?}");
    }
    // All four at once: four more.
    let all = ScrutinyFacts {
        new_payees: vec![(2, "x".into())],
        new_payee_count: 12,
        duplicate_batches: vec![1],
        duplicate_payments: vec![(3, 1)],
        duplicate_payment_count: 1,
        outliers: vec![(4, eur("9000"), eur("1000"))],
        outlier_count: 1,
    };
    let mut f = facts(vec![eur("5000")]);
    f.scrutiny = all;
    let d = decide(&policy(), &HardLimits::default(), &f);
    assert_eq!(required(&d), Some(5), "{d:?}");
    let Decision::Awaiting { reasons, .. } = d else {
        unreachable!()
    };
    assert!(
        reasons.iter().any(|r| r.contains("12 payee accounts")),
        "{reasons:?}"
    );
}

fn person(name: &str, grants: &[(Role, &str, Option<&str>)]) -> Person {
    Person {
        name: name.into(),
        standing: Standing::Active,
        grants: grants
            .iter()
            .map(|(r, c, l)| Grant {
                role: *r,
                channel: (*c).into(),
                limit: l.map(lim),
            })
            .collect(),
    }
}

fn batch(submitter: &str, approved_by: &[&str], totals: Vec<Money>) -> BatchFacts {
    BatchFacts {
        id: 42,
        channel: "payroll".into(),
        submitter: Some(submitter.into()),
        dropped_by: Some("clerk".into()),
        totals,
        approved_by: approved_by.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn segregation_of_duties() {
    use Role::*;
    let b = batch("hr", &["bob"], vec![eur("50000")]);
    type Case<'a> = (Person, Result<(), fn(&Refusal) -> bool>);
    let cases: Vec<Case> = vec![
        (person("alice", &[(Approver, "payroll", None)]), Ok(())),
        (person("alice", &[(Approver, "*", None)]), Ok(())),
        // The submitter never approves their own batch, whatever they hold.
        (
            person("hr", &[(Approver, "*", None), (Admin, "*", None)]),
            Err(|r| matches!(r, Refusal::OwnBatch { .. })),
        ),
        // One person counts once.
        (
            person("bob", &[(Approver, "payroll", None)]),
            Err(|r| matches!(r, Refusal::AlreadyApproved { .. })),
        ),
        // An admin approves only with the approver role.
        (
            person("root", &[(Admin, "*", None)]),
            Err(|r| {
                matches!(
                    r,
                    Refusal::MissingRole {
                        role: Role::Approver,
                        ..
                    }
                )
            }),
        ),
        // Whoever dropped the file for a system-fed channel does not approve it either.
        (
            person("clerk", &[(Approver, "*", None)]),
            Err(|r| matches!(r, Refusal::OwnBatch { .. })),
        ),
        // Another channel's approver is not this one's.
        (
            person("carol", &[(Approver, "supplier", None)]),
            Err(|r| matches!(r, Refusal::MissingRole { .. })),
        ),
        // Personal limits: at the limit is within it.
        (
            person("dave", &[(Approver, "payroll", Some("50000"))]),
            Ok(()),
        ),
        (
            person("erin", &[(Approver, "payroll", Some("49999.99"))]),
            Err(|r| matches!(r, Refusal::OverPersonalLimit { .. })),
        ),
        // A per-currency limit that does not list the currency does not cover it.
        (
            person("frank", &[(Approver, "payroll", Some("JPY:99999999"))]),
            Err(|r| matches!(r, Refusal::OverPersonalLimit { .. })),
        ),
        // The channel's own grant (with its limit) comes before the `*` one.
        (
            person(
                "gina",
                &[(Approver, "*", None), (Approver, "payroll", Some("100"))],
            ),
            Err(|r| matches!(r, Refusal::OverPersonalLimit { .. })),
        ),
    ];
    for (p, want) in cases {
        let got = may_approve(&p, &b).map(|_| ());
        match (&got, &want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(check)) => assert!(check(e), "{}: {e}", p.name),
            _ => panic!("{}: got {got:?}", p.name),
        }
    }
    // Disabled and unknown users hold nothing.
    let mut p = person("alice", &[(Approver, "*", None)]);
    p.standing = Standing::Disabled;
    assert!(matches!(may_approve(&p, &b), Err(Refusal::Disabled { .. })));
    p.standing = Standing::Unknown;
    assert!(matches!(may_approve(&p, &b), Err(Refusal::Unknown { .. })));
}

#[test]
fn the_refusal_names_the_role_needed() {
    let p = person("zoe", &[(Role::Auditor, "*", None)]);
    let e = may_approve(&p, &batch("hr", &[], vec![eur("1")])).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("`approver` role") && m.contains("payroll"),
        "{m}"
    );
}

#[test]
fn granting_roles() {
    use Role::*;
    let root = person("root", &[(Admin, "*", None)]);
    let hr_admin = person("hra", &[(Admin, "payroll", None)]);
    // Nobody grants themselves anything, not even an admin on `*`.
    assert!(matches!(
        may_change_role(&root, "root", Approver, "payroll", "grant"),
        Err(Refusal::SelfGrant { .. })
    ));
    assert!(may_change_role(&root, "alice", Approver, "payroll", "grant").is_ok());
    assert!(may_change_role(&root, "alice", Admin, "*", "grant").is_ok());
    // A channel's admin manages that channel only.
    assert!(may_change_role(&hr_admin, "alice", Approver, "payroll", "grant").is_ok());
    assert!(may_change_role(&hr_admin, "alice", Approver, "supplier", "grant").is_err());
    assert!(may_change_role(&hr_admin, "alice", Approver, "*", "grant").is_err());
    // Giving up one's own role is allowed.
    assert!(may_change_role(&hr_admin, "hra", Admin, "payroll", "revoke").is_ok());
    // An approver is no admin.
    let a = person("amy", &[(Approver, "*", None)]);
    assert!(matches!(
        may_change_role(&a, "bob", Approver, "payroll", "grant"),
        Err(Refusal::MissingRole { role: Admin, .. })
    ));
}

#[test]
fn expiry_at_the_boundary() {
    let p = Approval {
        expire_hours: 2.0,
        ..Approval::default()
    };
    let since: DateTime<Utc> = "2026-12-01T08:00:00Z".parse().unwrap();
    let at = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
    assert!(!expired(since, at("2026-12-01T09:59:59.999Z"), &p));
    assert!(expired(since, at("2026-12-01T10:00:00Z"), &p));
    assert!(expired(since, at("2026-12-02T10:00:00Z"), &p));
    let half = Approval {
        expire_hours: 0.5,
        scrutiny: Scrutiny::default(),
        ..Approval::default()
    };
    assert_eq!(expires_at(since, &half), at("2026-12-01T08:30:00Z"));
}

#[test]
fn keys_are_normalized_for_equality() {
    for (a, b) in [
        ("DE89 3704 0044 0532 0130 00", "de89370400440532013000"),
        (
            "ＤＥ８９３７０４００４４０５３２０１３０００",
            "DE89370400440532013000",
        ),
        ("６２２２　０２１２", "62220212"),
        ("Invoice  4711", "INVOICE4711"),
    ] {
        assert_eq!(normalize_key(a), normalize_key(b), "{a} / {b}");
    }
    assert_ne!(normalize_key("INV-1"), normalize_key("INV-2"));
}

#[test]
fn the_review_flags_what_deserves_a_look() {
    let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
    let role = |granted: &str, used: Option<&str>| ReviewRole {
        role: "approver".into(),
        channel: "payroll".into(),
        limit: None,
        granted_by: "root".into(),
        granted_at: granted.into(),
        last_used_at: used.map(String::from),
    };
    let users = vec![
        ReviewInput {
            user: "active".into(),
            disabled: false,
            os_account: OsAccount::Present,
            roles: vec![role("2026-01-01T00:00:00Z", Some("2026-11-20T00:00:00Z"))],
        },
        ReviewInput {
            user: "idle".into(),
            disabled: false,
            os_account: OsAccount::Present,
            roles: vec![role("2026-01-01T00:00:00Z", Some("2026-08-01T00:00:00Z"))],
        },
        ReviewInput {
            user: "never".into(),
            disabled: false,
            os_account: OsAccount::Present,
            roles: vec![role("2026-01-01T00:00:00Z", None)],
        },
        ReviewInput {
            user: "fresh".into(),
            disabled: false,
            os_account: OsAccount::Present,
            roles: vec![role("2026-11-30T00:00:00Z", None)],
        },
        ReviewInput {
            user: "gone".into(),
            disabled: false,
            os_account: OsAccount::Missing,
            roles: vec![role("2026-11-30T00:00:00Z", Some("2026-11-30T00:00:00Z"))],
        },
        ReviewInput {
            user: "reused".into(),
            disabled: true,
            os_account: OsAccount::UidChanged,
            roles: vec![],
        },
    ];
    let lines = review(&users, now, 90);
    let flags = |u: &str| {
        lines
            .iter()
            .find(|l| l.user == u)
            .map(|l| l.flags.join("; "))
            .unwrap()
    };
    assert_eq!(flags("active"), "");
    assert!(flags("idle").contains("not used for 90 days"), "{lines:?}");
    assert!(flags("never").contains("never used"), "{lines:?}");
    assert_eq!(flags("fresh"), "");
    assert!(flags("gone").contains("no longer exists"), "{lines:?}");
    assert!(flags("reused").contains("another uid") && flags("reused").contains("disabled"));
    assert_eq!(lines.len(), 6);
}
