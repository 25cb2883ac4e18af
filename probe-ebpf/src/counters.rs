//! `top`: counters aggregated in the kernel instead of events (SETTINGS.counters). Each
//! program's own `count_*` lives beside it; this is what they share.

use probe_common::{CpuCounters, Filter, COMM_LEN, FILTER_COMM, FILTER_DEV, LAT_BUCKETS};

use crate::{
    atomic::atomic_inc,
    config::counters_on,
    maps::{COUNTERS, FILTER},
    read::current_comm,
};

#[inline(always)]
fn prefix_match(f: &Filter, name: &[u8; COMM_LEN]) -> bool {
    let mut i = 0;
    while i < COMM_LEN {
        if (i as u32) < f.len && name[i] != f.pattern[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `top`'s `/` filter is on a device name (events with a device read their name for it).
#[inline(always)]
pub fn device_filter_on() -> bool {
    FILTER.get(0).is_some_and(|f| f.kind == FILTER_DEV)
}

/// This CPU's counters when `top` runs and the event passes its filter. `dev`: the event's
/// device, for events that have one (the device filter leaves the others alone).
#[inline(always)]
pub fn counting(dev: Option<&[u8; COMM_LEN]>) -> Option<&'static mut CpuCounters> {
    if !counters_on() {
        return None;
    }
    if let Some(f) = FILTER.get(0) {
        if f.kind == FILTER_COMM {
            let comm = current_comm();
            if !prefix_match(f, &comm) {
                return None;
            }
        } else if f.kind == FILTER_DEV {
            if let Some(dev) = dev {
                if !prefix_match(f, dev) {
                    return None;
                }
            }
        }
    }
    let c = unsafe { &mut *COUNTERS.get_ptr_mut(0)? };
    atomic_inc(&mut c.events);
    Some(c)
}

/// Bucket b holds [2^b, 2^(b+1)) ns; the last one everything above.
#[inline(always)]
pub fn log2_bucket(mut v: u64) -> usize {
    let mut b = 0;
    if v >= 1 << 32 {
        v >>= 32;
        b += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        b += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        b += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        b += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        b += 2;
    }
    if v >= 1 << 1 {
        b += 1;
    }
    if b >= LAT_BUCKETS {
        LAT_BUCKETS - 1
    } else {
        b
    }
}
