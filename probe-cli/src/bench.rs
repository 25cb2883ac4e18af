//! Bench-only: compiled into the unit-test binary, never into `napiscope`.
//!
//! Replay a real recording through the recorder's user-space path (decode → columns →
//! Parquet), for measuring its cost per event without a kernel:
//!
//! ```text
//! NAPISCOPE_REPLAY=target/bench/flood-128.parquet cargo test --release -p probe-cli \
//!     replay_bench -- --ignored --nocapture
//! ```
//!
//! With `NAPISCOPE_REPLAY_WORK=0` it only builds the raw records (subtract that run's
//! callgrind instruction count from a full run's to get the recorder's own count).

use std::{collections::HashMap, time::Instant};

use analysis::{Event, TraceMeta, TraceWriter};
use probe_common::RawEvent;

use crate::{
    kernel::{decode::Decoder, symbols::Symbols},
    recorder::{ingest, process_cpu, Tally},
};

fn name16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = s.len().min(15);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn state_bits(s: &str) -> i64 {
    let (s, plus) = match s.strip_suffix('+') {
        Some(x) => (x, 0x100),
        None => (s, 0),
    };
    let mut v = plus;
    for f in s.split('|') {
        v |= match f {
            "S" => 0x01,
            "D" => 0x02,
            "T" => 0x04,
            "t" => 0x08,
            "X" => 0x10,
            "Z" => 0x20,
            "P" => 0x40,
            "I" => 0x80,
            _ => 0,
        };
    }
    v
}

/// The ring-buffer records a recording's rows came from, and the kallsyms text that
/// names their functions.
pub fn raw_records(events: &[Event]) -> (Vec<RawEvent>, String) {
    let mut funcs: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let mut r = RawEvent::zeroed();
        r.ts_ns = e.ts_ns;
        r.seq = e.seq;
        r.cpu = e.cpu;
        r.pid = e.pid as u32;
        r.kind = e.event as u16;
        r.ctx = e.ctx as u8;
        r.comm = name16(&e.comm);
        r.ptr = e.napi.or(e.skb).or(e.csd).unwrap_or(0);
        if let Some(f) = &e.func {
            let n = funcs.len() as u64;
            r.func = *funcs
                .entry(f.clone())
                .or_insert(0xffff_ffff_8100_0000 + n * 0x100);
        }
        let name = e.dev.as_deref().or(e.target_comm.as_deref()).unwrap_or("");
        r.name = name16(name);
        r.arg0 = e
            .vec
            .map(|v| v as i32)
            .or(e.work)
            .or(e.len.map(|v| v as i32))
            .or(e.ret)
            .or(e.target_cpu)
            .unwrap_or(0);
        r.arg1 = e.budget.or(e.target_pid).unwrap_or(0);
        r.state = e.prev_state.as_deref().map_or(0, state_bits);
        out.push(r);
    }
    let syms = funcs
        .iter()
        .map(|(n, a)| format!("{a:x} t {n}\n"))
        .collect::<String>();
    (out, syms)
}

#[test]
#[ignore = "benchmark: needs NAPISCOPE_REPLAY=<a recording>"]
fn replay_bench() {
    let Ok(path) = std::env::var("NAPISCOPE_REPLAY") else {
        eprintln!("set NAPISCOPE_REPLAY to a recording");
        return;
    };
    let work = std::env::var("NAPISCOPE_REPLAY_WORK").map_or(true, |v| v != "0");
    let t = analysis::read_trace(std::path::Path::new(&path)).unwrap();
    let (raws, syms) = raw_records(&t.events);
    drop(t);
    let bytes: Vec<u8> = raws
        .iter()
        .flat_map(|r| {
            // SAFETY: RawEvent is repr(C) plain data without implicit padding.
            unsafe {
                std::slice::from_raw_parts(
                    (r as *const RawEvent).cast::<u8>(),
                    std::mem::size_of::<RawEvent>(),
                )
            }
            .to_vec()
        })
        .collect();
    let out = std::env::temp_dir().join(format!("napiscope-replay-{}.parquet", std::process::id()));
    if !work {
        eprintln!("setup only: {} records", raws.len());
        return;
    }
    let decoder = Decoder::new(Symbols::parse(&syms), false);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let (rows, size) = pipeline(&bytes, decoder, &out);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    eprintln!(
        "replayed {rows} events: {:.3} s wall, {:.3} s CPU (all threads) = {:.0} ns CPU/event, {:.2} bytes/event",
        wall,
        cpu,
        cpu * 1e9 / rows as f64,
        size as f64 / rows as f64
    );
    // (The file's content is tested by decode::tests; reading it here would add to the
    // instruction count being measured.)
    assert_eq!(rows, raws.len() as u64);
    assert!(size > 0);
    std::fs::remove_file(&out).unwrap();
}

/// User + system CPU seconds of this process (all threads).
fn cpu_time() -> f64 {
    let (user, sys) = process_cpu();
    user + sys
}

/// What `record` does with the ring's records, 96 bytes at a time.
fn pipeline(bytes: &[u8], mut decoder: Decoder, out: &std::path::Path) -> (u64, u64) {
    let mut writer = TraceWriter::create_threaded(out, Default::default()).unwrap();
    let mut tally = Tally::default();
    for item in bytes.chunks(96) {
        ingest(item, &mut decoder, &mut writer, &mut tally).unwrap();
    }
    assert_eq!(tally.bad, 0);
    let rows = writer.rows();
    let size = writer.finish(&TraceMeta::default()).unwrap();
    (rows, size)
}
