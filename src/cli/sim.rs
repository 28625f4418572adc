//! `paygate bank-sim SIMFILE`: plays the bank's side of a transport until SIGTERM/SIGINT.

use super::Exit;
use crate::banksim::{SimConfig, Simulator};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The simulator's settings (TOML): inbox, outbox, state_dir, keys, rules, seed, delay_ms
    sim: PathBuf,
    /// How often the inbox is looked at, in milliseconds
    #[arg(long, default_value_t = 200)]
    tick_ms: u64,
}

pub fn run(args: Args) -> Exit {
    let cfg = match SimConfig::load(&args.sim) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("paygate bank-sim: {e}");
            return Exit::Config;
        }
    };
    let mut sim = match Simulator::new(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paygate bank-sim: {e}");
            return Exit::Config;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let _ = SIGNALLED.set(stop.clone());
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    println!("bank-sim: watching {}", args.sim.display());
    let result = sim.run(
        Duration::from_millis(args.tick_ms),
        &|| stop.load(Ordering::Relaxed),
        &mut |e| println!("{e}"),
    );
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("paygate bank-sim: {e}");
            Exit::Usage
        }
    }
}

static SIGNALLED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(s) = SIGNALLED.get() {
        s.store(true, Ordering::Relaxed);
    }
}
