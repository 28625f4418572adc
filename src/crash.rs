//! Crash points for the crash test (`tests/daemon`): inert unless the environment names them.
//! A leaf module, so that every stage can call it without depending on the daemon.

/// A crash point, for the crash test: with `PAYGATE_CRASH_POINTS=name[,name…]` and
/// `PAYGATE_CRASH_PERCENT=N` in the environment, the process kills itself with SIGKILL — as a
/// power cut would: nothing flushed, nothing cleaned up — N% of the times it passes one of
/// the named points. Without those variables (production) it does nothing.
pub fn crash_point(name: &str) {
    static POINTS: std::sync::OnceLock<Option<(Vec<String>, u64)>> = std::sync::OnceLock::new();
    let points = POINTS.get_or_init(|| {
        let names = std::env::var("PAYGATE_CRASH_POINTS").ok()?;
        let percent = std::env::var("PAYGATE_CRASH_PERCENT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(100);
        Some((names.split(',').map(str::to_string).collect(), percent))
    });
    if let Some((names, percent)) = points
        && names.iter().any(|n| n == name)
        && rand::random::<u64>() % 100 < *percent
    {
        eprintln!("crash point {name}: SIGKILL");
        // SAFETY: signals this very process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Every crash point, in pipeline order (the crash test walks them all).
pub const CRASH_POINTS: &[&str] = &[
    "claimed",
    "recorded",
    "batch-created",
    "validated",
    "decided",
    "source-archived",
    "rejection-written",
    "sealed-file-written",
    "sealed",
    "upload-started",
    "uploaded",
    "sent",
    "return-recorded",
    "return-opened",
];
