//! SIGINT/SIGTERM as a stop request: `record` polls the signal itself, other loops (top,
//! scenario, verify) get a flag that turns true.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicI32, Ordering},
        Arc,
    },
    time::Duration,
};

static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM from now on (forgetting any caught before).
pub fn install_handlers() {
    STOP_SIGNAL.store(0, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// The signal caught since `install_handlers`, or 0.
pub fn caught() -> i32 {
    STOP_SIGNAL.load(Ordering::SeqCst)
}

/// A flag that turns true on SIGINT/SIGTERM (for loops that are not `record`'s).
pub fn stop_flag_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    install_handlers();
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if caught() != 0 {
            f.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    });
    flag
}
