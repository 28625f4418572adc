//! This instance's lease on the store, as this host's clock sees it.
//!
//! The store counts a lease from when it runs the renewal; this side counts it from when the
//! renewal was sent, which is earlier, so this side always believes the lease ends first. What
//! the instance holds (a batch's step, an upload in flight) is acted on only while the lease
//! still has a margin left: an instance cut off from a shared store stops sending before any
//! other instance can take its work over. The store's own fence (the claim re-checked in the
//! transaction that records an upload's start) covers what this side cannot see.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Lease {
    /// How long a renewal holds, in milliseconds.
    pub ms: i64,
    /// Whether other instances share the store: only then can the lease be taken over.
    shared: bool,
    base: Instant,
    /// Milliseconds after `base` until which the lease certainly holds.
    until: AtomicU64,
    lost: AtomicBool,
}

impl Lease {
    /// A lease registered (or renewed) by a statement sent at `sent`.
    pub fn new(ms: i64, shared: bool, sent: Instant) -> Lease {
        let lease = Lease {
            ms: ms.max(1),
            shared,
            base: sent,
            until: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        };
        lease.renewed(sent);
        lease
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let at = sent.saturating_duration_since(self.base).as_millis() as u64;
        self.until.fetch_max(at + self.ms as u64, Ordering::SeqCst);
    }

    /// The lease is gone for good: nothing more is claimed or sent, and the daemon stops.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Time left before the lease may run out in the store (zero once it may have).
    pub fn left(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(self.until.load(Ordering::SeqCst).saturating_sub(now))
    }

    /// How long before the lease's end this instance stops acting on what it holds: a fifth
    /// of the lease, between 200 ms and 5 s (time for the last write or rename to arrive).
    pub fn margin(&self) -> Duration {
        Duration::from_millis((self.ms as u64 / 5).clamp(200, 5_000))
    }

    /// Whether this instance may still claim work and act on what it holds. On an embedded
    /// store (one instance, its data folder locked) only a lost lease says no.
    pub fn holds(&self) -> bool {
        !self.is_lost() && (!self.shared || self.left() > self.margin())
    }

    /// Whether the lease may have run out in the store without a renewal.
    pub fn expired(&self) -> bool {
        self.shared && self.left().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_lease_stops_holding_a_margin_before_it_ends() {
        let sent = Instant::now() - Duration::from_millis(2_500);
        let l = Lease::new(3_000, true, sent);
        // 500 ms left at most, under the 600 ms margin.
        assert!(!l.holds());
        assert!(!l.expired());
        l.renewed(Instant::now());
        assert!(l.holds());
        assert!(l.left() > Duration::from_millis(2_900));
    }

    #[test]
    fn an_earlier_renewal_answered_late_does_not_shorten_the_lease() {
        let l = Lease::new(3_000, true, Instant::now());
        let before = l.left();
        l.renewed(Instant::now() - Duration::from_secs(2));
        assert!(l.left() >= before - Duration::from_millis(50));
    }

    #[test]
    fn a_lapsed_shared_lease_has_expired_and_an_embedded_one_still_holds() {
        let sent = Instant::now() - Duration::from_secs(5);
        let shared = Lease::new(3_000, true, sent);
        assert!(shared.expired() && !shared.holds());
        let embedded = Lease::new(3_000, false, sent);
        assert!(!embedded.expired() && embedded.holds());
        embedded.lose();
        assert!(!embedded.holds());
    }
}
