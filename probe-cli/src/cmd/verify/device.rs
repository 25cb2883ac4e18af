//! What a device scenario's setting says of its device's NAPI polls, checked on the
//! recording: not threaded (veth-gro-rps), every poll of the device is NET_RX's; switched to
//! threaded halfway (veth-gro-threaded), NET_RX's until its `napi/<dev>-<id>` thread first
//! polls, the thread's from then on (____napi_schedule reads NAPI_STATE_THREADED at each
//! scheduling and wakes the thread instead of raising NET_RX, 29863d41bb6e); busy polled by
//! a receiver (veth-gro-busy-poll), polls in a task are that receiver's own (napi_busy_loop
//! runs in the task that called recv), none a thread's. The rules N-1..N-3 hold either way;
//! this is the part only the scenario's setting can tell.

use analysis::{event::PollPlace, Event, EventKind};
use serde::Serialize;

/// What the scenario did to the device's NAPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    NotThreaded,
    ThreadedHalfway,
    /// Busy polled by the receiving thread `tid`, whose socket polled instance `napi_id`
    /// (SO_INCOMING_NAPI_ID).
    BusyPoll {
        tid: u32,
        napi_id: Option<u32>,
    },
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::NotThreaded => "not threaded",
            Setting::ThreadedHalfway => "threaded halfway",
            Setting::BusyPoll { .. } => "busy polled",
        }
    }
}

/// The device's polls by place, and whether the setting's claim holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceNapi {
    pub dev: String,
    /// The setting: "not threaded", "threaded halfway" or "busy polled".
    pub setting: &'static str,
    pub net_rx_polls: u64,
    pub thread_polls: u64,
    /// Polls in any other task (busy polling).
    pub other_polls: u64,
    /// Of them, by the scenario's busy-polling receiver, and the packets they polled.
    pub busy_polls: u64,
    pub busy_packets: u64,
    /// Busy polls of an instance other than the one the receiver's socket names.
    pub busy_other_instance: u64,
    /// NET_RX polls after the thread's first: none while `threaded` stays on.
    pub net_rx_after_thread: u64,
    /// The threads that polled it.
    pub threads: Vec<String>,
    pub holds: bool,
    /// What the setting expects, in words (shown when it does not hold).
    pub expected: String,
}

/// The polls of `dev` in `events` (time order not assumed) against the setting.
pub fn device_napi(events: &[Event], dev: &str, setting: Setting) -> DeviceNapi {
    let mut polls: Vec<&Event> = (events.iter())
        .filter(|e| e.event == EventKind::NapiPoll && e.dev.as_deref() == Some(dev))
        .collect();
    polls.sort_by_key(|e| e.ts_ns);
    let mut d = DeviceNapi {
        dev: dev.to_string(),
        setting: setting.name(),
        ..DeviceNapi::default()
    };
    for e in polls {
        match PollPlace::of(e.ctx, &e.comm) {
            PollPlace::NetRx if d.thread_polls > 0 => {
                d.net_rx_polls += 1;
                d.net_rx_after_thread += 1;
            }
            PollPlace::NetRx => d.net_rx_polls += 1,
            PollPlace::Thread => {
                d.thread_polls += 1;
                if !d.threads.contains(&e.comm) {
                    d.threads.push(e.comm.clone());
                }
            }
            PollPlace::Other => {
                d.other_polls += 1;
                if let Setting::BusyPoll { tid, napi_id } = setting {
                    if e.pid == tid as i32 {
                        d.busy_polls += 1;
                        d.busy_packets += e.work.unwrap_or(0).max(0) as u64;
                        if napi_id.zip(e.napi_id).is_some_and(|(a, b)| a != b) {
                            d.busy_other_instance += 1;
                        }
                    }
                }
            }
        }
    }
    (d.holds, d.expected) = match setting {
        Setting::ThreadedHalfway => (
            d.net_rx_polls > 0 && d.thread_polls > 0 && d.net_rx_after_thread == 0,
            format!("{dev} polled in NET_RX, then only by its napi/{dev}-<id> thread"),
        ),
        Setting::NotThreaded => (
            d.net_rx_polls > 0 && d.thread_polls == 0,
            format!("every poll of {dev} in NET_RX, none by a napi/ thread"),
        ),
        Setting::BusyPoll { tid, .. } => (
            d.busy_polls > 0
                && d.busy_polls == d.other_polls
                && d.busy_other_instance == 0
                && d.thread_polls == 0,
            format!(
                "{dev} polled in NET_RX and by the busy-polling receiver (tid {tid}), \
                 the instance its socket names; no other task, no napi/ thread"
            ),
        ),
    };
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use analysis::Ctx;

    fn busy(ts: u64, tid: i32, work: i32) -> Event {
        let mut e = poll(ts, false);
        (e.ctx, e.comm, e.pid, e.work) = (Ctx::Task, "napiscope-busy".into(), tid, Some(work));
        e
    }

    #[test]
    fn busy_polls_count_only_when_the_receiver_made_them() {
        let mut ev: Vec<Event> = (1..5).map(|t| poll(t, false)).collect();
        let recv = Setting::BusyPoll {
            tid: 77,
            napi_id: Some(282),
        };
        assert!(!device_napi(&ev, "nsc1", recv).holds, "no busy poll at all");
        ev.extend([busy(5, 77, 0), busy(6, 77, 3)]);
        let d = device_napi(&ev, "nsc1", recv);
        assert!(d.holds, "{d:?}");
        assert_eq!((d.busy_polls, d.busy_packets, d.other_polls), (2, 3, 2));
        // A poll in some other task is not the receiver's: the claim fails.
        ev.push(busy(7, 78, 1));
        let d = device_napi(&ev, "nsc1", recv);
        assert_eq!((d.holds, d.busy_polls, d.other_polls), (false, 2, 3));
        ev.pop();
        // The receiver polling an instance its socket does not name.
        let mut elsewhere = busy(7, 77, 0);
        elsewhere.napi_id = Some(999);
        ev.push(elsewhere);
        let d = device_napi(&ev, "nsc1", recv);
        assert_eq!((d.holds, d.busy_other_instance), (false, 1));
        ev.pop();
        ev.push(poll(8, true));
        assert!(
            !device_napi(&ev, "nsc1", recv).holds,
            "a napi/ thread polled"
        );
    }

    fn poll(ts: u64, thread: bool) -> Event {
        let mut e = Event::new(ts, 1, ts, EventKind::NapiPoll);
        (e.ctx, e.comm) = if thread {
            (Ctx::Task, "napi/nsc1-282".to_string())
        } else {
            (Ctx::Softirq, "swapper/1".to_string())
        };
        (e.dev, e.napi_id) = (Some("nsc1".into()), Some(282));
        e
    }

    #[test]
    fn each_setting_holds_only_where_its_polls_ran() {
        let softirq: Vec<Event> = (1..5).map(|t| poll(t, false)).collect();
        assert!(device_napi(&softirq, "nsc1", Setting::NotThreaded).holds);
        assert!(
            !device_napi(&softirq, "nsc1", Setting::ThreadedHalfway).holds,
            "never threaded"
        );
        let mut switched = softirq.clone();
        switched.extend((5..9).map(|t| poll(t, true)));
        let d = device_napi(&switched, "nsc1", Setting::ThreadedHalfway);
        assert!(d.holds, "{d:?}");
        assert_eq!((d.net_rx_polls, d.thread_polls), (4, 4));
        assert_eq!(d.threads, ["napi/nsc1-282"]);
        assert!(!device_napi(&switched, "nsc1", Setting::NotThreaded).holds);
        // Back in NET_RX while threaded stays on: the claim fails.
        switched.push(poll(9, false));
        let d = device_napi(&switched, "nsc1", Setting::ThreadedHalfway);
        assert_eq!((d.holds, d.net_rx_after_thread), (false, 1));
        // Another device's polls do not count.
        assert_eq!(
            device_napi(&switched, "eth0", Setting::NotThreaded).net_rx_polls,
            0
        );
    }
}
