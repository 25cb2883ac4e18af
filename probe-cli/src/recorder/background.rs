//! `record`'s Parquet encoder yields to the traced workload. Encoding costs far more CPU per
//! event than draining the ring buffer, and on a saturated machine every cycle it takes is
//! a cycle the workload under study loses. So the writer thread runs as SCHED_IDLE — only on
//! CPU time nothing else wants — while its queue of decoded rows has room, and at normal
//! priority when the queue passes half its size or the recording has stopped. perf makes
//! the same trade by writing raw buffers and decoding later; here the file is still written
//! as the recording goes whenever the machine has a spare moment.

use std::sync::{
    atomic::{AtomicI32, Ordering},
    Arc,
};

use analysis::trace::{WriterThread, QUEUED_ROW_BYTES};

/// The writer thread's tid once it runs as SCHED_IDLE; 0 before, -1 if that was refused.
pub struct Background {
    tid: Arc<AtomicI32>,
    queue_rows: usize,
    boosted: bool,
}

/// A quarter of the available memory, in MiB (at least 16).
fn quarter_of_available_mb() -> u64 {
    let avail_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(4 << 20);
    (avail_kb / 1024 / 4).max(16)
}

/// Default queue budget: 1 GiB, or a quarter of the available memory if that is less.
pub fn default_buffer_mb() -> u64 {
    quarter_of_available_mb().min(1024)
}

/// A budget the user asked for, lowered to a quarter of the available memory (with a note
/// unless `quiet`): more could only end in the out-of-memory killer.
pub fn cap_buffer_mb(mb: u64, quiet: bool) -> u64 {
    let limit = quarter_of_available_mb();
    if mb <= limit {
        return mb;
    }
    if !quiet {
        eprintln!(
            "napiscope: note: --encode-buffer-mb {mb} is more than a quarter of the available \
             memory; using {limit} MiB"
        );
    }
    limit
}

impl Background {
    /// Writer-thread options for a queue of `buffer_mb`; `None` when 0 (encode at normal
    /// priority, with the writer's default queue).
    pub fn new(buffer_mb: u64) -> (WriterThread, Option<Background>) {
        if buffer_mb == 0 {
            return (WriterThread::default(), None);
        }
        let queue_rows = (buffer_mb.saturating_mul(1024 * 1024) / QUEUED_ROW_BYTES as u64)
            .clamp(1 << 16, usize::MAX as u64) as usize;
        let tid = Arc::new(AtomicI32::new(0));
        let t = tid.clone();
        let opts = WriterThread {
            queue_rows,
            on_start: Some(Box::new(move || {
                // SAFETY: gettid has no arguments; pid 0 means the calling thread.
                let me = unsafe { libc::gettid() };
                let ok = set_policy(0, libc::SCHED_IDLE);
                t.store(if ok { me } else { -1 }, Ordering::SeqCst);
            })),
            ..WriterThread::default()
        };
        let bg = Background {
            tid,
            queue_rows,
            boosted: false,
        };
        (opts, Some(bg))
    }

    /// False if the kernel refused SCHED_IDLE (the encoder then runs at normal priority).
    pub fn refused(&self) -> bool {
        self.tid.load(Ordering::SeqCst) < 0
    }

    /// Called after each drain with the rows waiting for the encoder: normal priority above
    /// half the queue, idle again below a quarter (hysteresis, so it does not flap).
    pub fn regulate(&mut self, queued: usize) {
        if !self.boosted && queued > self.queue_rows / 2 {
            self.set(false);
        } else if self.boosted && queued < self.queue_rows / 4 {
            self.set(true);
        }
    }

    /// The recording stopped: finish at normal priority, the user is waiting for the file.
    pub fn stop(&mut self) {
        if !self.boosted {
            self.set(false);
        }
    }

    fn set(&mut self, idle: bool) {
        let tid = self.tid.load(Ordering::SeqCst);
        if tid <= 0 {
            return;
        }
        // Leaving SCHED_IDLE needs CAP_SYS_NICE (or RLIMIT_NICE); refused, the encoder stays
        // idle and a full queue makes the drain wait, so the ring buffer counts the losses.
        let policy = if idle {
            libc::SCHED_IDLE
        } else {
            libc::SCHED_OTHER
        };
        if set_policy(tid, policy) {
            self.boosted = !idle;
        }
    }
}

fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid sched_param; tid is one of our threads (or 0, the caller).
    unsafe { libc::sched_setscheduler(tid, policy, &param) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(tid: libc::pid_t) -> libc::c_int {
        // SAFETY: no pointers.
        unsafe { libc::sched_getscheduler(tid) }
    }

    #[test]
    fn writer_thread_idles_and_is_boosted_past_half_the_queue() {
        let (opts, bg) = Background::new(16);
        let mut bg = bg.expect("a queue budget gives a background encoder");
        let start = opts.on_start.expect("sets the policy");
        let tid = std::thread::spawn(move || {
            start();
            // SAFETY: no arguments.
            let me = unsafe { libc::gettid() };
            std::thread::park_timeout(std::time::Duration::from_secs(2));
            me
        });
        while bg.tid.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let t = bg.tid.load(Ordering::SeqCst);
        assert!(t > 0, "SCHED_IDLE refused");
        assert_eq!(policy_of(t), libc::SCHED_IDLE);
        bg.regulate(bg.queue_rows / 2 - 1);
        assert_eq!(policy_of(t), libc::SCHED_IDLE, "still room: stays idle");
        // SAFETY: no arguments.
        if unsafe { libc::geteuid() } != 0 {
            // Leaving SCHED_IDLE needs CAP_SYS_NICE; `set` then keeps the encoder idle.
            bg.regulate(bg.queue_rows);
            tid.thread().unpark();
            return;
        }
        bg.regulate(bg.queue_rows / 2 + 1);
        assert_eq!(
            policy_of(t),
            libc::SCHED_OTHER,
            "past half: normal priority"
        );
        bg.regulate(bg.queue_rows / 3);
        assert_eq!(
            policy_of(t),
            libc::SCHED_OTHER,
            "hysteresis: not idle above 1/4"
        );
        bg.regulate(bg.queue_rows / 4 - 1);
        assert_eq!(policy_of(t), libc::SCHED_IDLE);
        bg.stop();
        assert_eq!(
            policy_of(t),
            libc::SCHED_OTHER,
            "stopped: finish at normal priority"
        );
        tid.thread().unpark();
        assert_eq!(tid.join().unwrap(), t);
    }

    #[test]
    fn zero_budget_means_no_background() {
        let (opts, bg) = Background::new(0);
        assert!(bg.is_none() && opts.on_start.is_none());
        assert!((16..=1024).contains(&default_buffer_mb()));
    }

    #[test]
    fn a_huge_budget_is_capped_to_a_quarter_of_available_memory() {
        let capped = cap_buffer_mb(99_999_999, true);
        assert!((16..99_999_999).contains(&capped), "{capped}");
        assert_eq!(cap_buffer_mb(16, true), 16);
        // And the writer options for it are a bound, not an allocation.
        let (opts, _) = Background::new(u64::MAX);
        assert!(opts.queue_rows > 0);
    }
}
