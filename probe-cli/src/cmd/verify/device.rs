//! What a device scenario's setting says of its device's NAPI polls, checked on the
//! recording: not threaded (veth-gro-rps), every poll of the device is NET_RX's; switched to
//! threaded halfway (veth-gro-threaded), NET_RX's until its `napi/<dev>-<id>` thread first
//! polls, the thread's from then on (____napi_schedule reads NAPI_STATE_THREADED at each
//! scheduling and wakes the thread instead of raising NET_RX, 29863d41bb6e). The rules
//! N-1..N-3 hold either way; this is the part only the scenario's setting can tell.

use analysis::{event::PollPlace, Event, EventKind};
use serde::Serialize;

/// The device's polls by place, and whether the setting's claim holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeviceNapi {
    pub dev: String,
    /// The setting: "not threaded" or "threaded halfway".
    pub setting: &'static str,
    pub net_rx_polls: u64,
    pub thread_polls: u64,
    /// Polls in any other task (busy polling).
    pub other_polls: u64,
    /// NET_RX polls after the thread's first: none while `threaded` stays on.
    pub net_rx_after_thread: u64,
    /// The threads that polled it.
    pub threads: Vec<String>,
    pub holds: bool,
    /// What the setting expects, in words (shown when it does not hold).
    pub expected: String,
}

/// The polls of `dev` in `events` (time order not assumed) against the setting.
pub fn device_napi(events: &[Event], dev: &str, threaded_halfway: bool) -> DeviceNapi {
    let mut polls: Vec<&Event> = (events.iter())
        .filter(|e| e.event == EventKind::NapiPoll && e.dev.as_deref() == Some(dev))
        .collect();
    polls.sort_by_key(|e| e.ts_ns);
    let mut d = DeviceNapi {
        dev: dev.to_string(),
        setting: if threaded_halfway {
            "threaded halfway"
        } else {
            "not threaded"
        },
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
            PollPlace::Other => d.other_polls += 1,
        }
    }
    (d.holds, d.expected) = if threaded_halfway {
        (
            d.net_rx_polls > 0 && d.thread_polls > 0 && d.net_rx_after_thread == 0,
            format!("{dev} polled in NET_RX, then only by its napi/{dev}-<id> thread"),
        )
    } else {
        (
            d.net_rx_polls > 0 && d.thread_polls == 0,
            format!("every poll of {dev} in NET_RX, none by a napi/ thread"),
        )
    };
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use analysis::Ctx;

    fn poll(ts: u64, thread: bool) -> Event {
        let mut e = Event::new(ts, 1, ts, EventKind::NapiPoll);
        (e.ctx, e.comm) = if thread {
            (Ctx::Task, "napi/nsc1-282".to_string())
        } else {
            (Ctx::Softirq, "swapper/1".to_string())
        };
        e.dev = Some("nsc1".into());
        e
    }

    #[test]
    fn each_setting_holds_only_where_its_polls_ran() {
        let softirq: Vec<Event> = (1..5).map(|t| poll(t, false)).collect();
        assert!(device_napi(&softirq, "nsc1", false).holds);
        assert!(!device_napi(&softirq, "nsc1", true).holds, "never threaded");
        let mut switched = softirq.clone();
        switched.extend((5..9).map(|t| poll(t, true)));
        let d = device_napi(&switched, "nsc1", true);
        assert!(d.holds, "{d:?}");
        assert_eq!((d.net_rx_polls, d.thread_polls), (4, 4));
        assert_eq!(d.threads, ["napi/nsc1-282"]);
        assert!(!device_napi(&switched, "nsc1", false).holds);
        // Back in NET_RX while threaded stays on: the claim fails.
        switched.push(poll(9, false));
        let d = device_napi(&switched, "nsc1", true);
        assert_eq!((d.holds, d.net_rx_after_thread), (false, 1));
        // Another device's polls do not count.
        assert_eq!(device_napi(&switched, "eth0", false).net_rx_polls, 0);
    }
}
