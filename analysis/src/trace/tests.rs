//! Round trips through the file, bad and damaged files, and the two column readers agreeing.

use std::{fs::File, path::Path, sync::Arc};

use arrow::{
    array::{Int32Array, RecordBatch},
    datatypes::{DataType, Field, Schema},
};
use parquet::{
    arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
    basic::Encoding,
    file::properties::WriterProperties,
    schema::types::ColumnPath,
};

use super::{
    arrow_cols::read_columns_arrow,
    cols::{Cols, Sym},
    direct,
    event::{Ctx, Event, EventKind},
    reader::open_trace,
    schema,
    sparse::Sparse,
    *,
};

fn sample() -> Vec<Event> {
    let mut a = Event::new(1_000, 0, 0, EventKind::NetifRx);
    a.comm = "sender".into();
    a.pid = 42;
    a.skb = Some(0xdead);
    a.dev = Some("veth1".into());
    a.len = Some(64);
    let mut b = Event::new(2_000, 1, 0, EventKind::NapiPoll);
    b.ctx = Ctx::Softirq;
    b.napi = Some(7);
    b.dev = Some("(no_device)".into());
    b.work = Some(1);
    b.budget = Some(64);
    let mut c = Event::new(1_500, 0, 1, EventKind::CsdQueueCpu);
    c.target_cpu = Some(1);
    c.func = Some("rps_trigger_softirq".into());
    c.csd = Some(9);
    let mut d = Event::new(3_000, 1, 1, EventKind::SchedSwitch);
    d.target_comm = Some("ksoftirqd/1".into());
    d.target_pid = Some(20);
    d.prev_state = Some("R+".into());
    vec![a, b, c, d]
}

#[test]
fn round_trip_keeps_every_field_and_metadata() {
    let dir = std::env::temp_dir().join(format!("napiscope-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.parquet");
    let mut meta = TraceMeta::default();
    meta.set("kernel_release", "6.18.0");
    meta.set("lost_per_cpu", "[0,3]");
    write_trace(&path, &sample(), &meta).unwrap();
    let t = read_trace(&path).unwrap();
    assert_eq!(t.events, sample());
    assert_eq!(t.meta.get("kernel_release"), Some("6.18.0"));
    assert_eq!(t.meta.get("schema_version"), Some(SCHEMA_VERSION));
    assert_eq!(t.meta.get("rows"), Some("4"));
    assert_eq!(t.meta.lost_per_cpu(), vec![0, 3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("napiscope-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let e = read_trace(&empty).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");

    let good = dir.join("good.parquet");
    write_trace(&good, &sample(), &TraceMeta::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let trunc = dir.join("trunc.parquet");
    std::fs::write(&trunc, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", read_trace(&trunc).unwrap_err());
    assert!(e.contains("not a readable Parquet file"), "{e}");

    // A valid Parquet file of another schema.
    let other = dir.join("other.parquet");
    let s = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
    let batch =
        RecordBatch::try_new(s.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
    let mut w = ArrowWriter::try_new(File::create(&other).unwrap(), s, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = read_trace(&other).unwrap_err().to_string();
    assert!(e.contains("column `ts_ns` is missing"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn numbers_too_large_for_the_checker_are_refused_not_cut() {
    let dir = std::env::temp_dir().join(format!("napiscope-wide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, want) in [("cpu", "CPU 70000"), ("vec", "softirq vector 300")] {
        let mut events = sample();
        match name {
            "cpu" => events[1].cpu = 70_000,
            _ => events[1].vec = Some(300),
        }
        let path = dir.join(format!("{name}.parquet"));
        write_trace(&path, &events, &TraceMeta::default()).unwrap();
        let e = format!("{:#}", read_columns(&path).unwrap_err());
        assert!(e.contains(want), "{name}: {e}");
    }
    // At the edge: read, and kept.
    let mut events = sample();
    events[1].cpu = 65_535;
    events[1].vec = Some(255);
    let path = dir.join("edge.parquet");
    write_trace(&path, &events, &TraceMeta::default()).unwrap();
    let (c, _) = read_columns(&path).unwrap();
    assert!(c.cpu.contains(&65_535));
    assert_eq!(c.vec.values(), [255]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every column of two `Cols`, strings compared as text (ids may differ).
fn assert_same_cols(a: &Cols, b: &Cols) {
    assert_eq!(a.len(), b.len());
    macro_rules! same {
        ($($f:ident)*) => { $(assert_eq!(a.$f, b.$f, "column {}", stringify!($f));)* };
    }
    same!(ts cpu kind ctx pid vec napi skb work budget ret target_cpu napi_id);
    // seq as kept, or as the reader scanned it.
    let seq = |c: &Cols| {
        (c.seq_facts.clone()).unwrap_or_else(|| super::seqscan::scan(&c.ts, &c.cpu, &c.seq))
    };
    assert_eq!(seq(a), seq(b));
    let comm =
        |c: &Cols| -> Vec<String> { c.comm.iter().map(|s| c.strs.get(*s).to_string()).collect() };
    assert_eq!(comm(a), comm(b));
    let text = |c: &Cols, v: &Sparse<Sym>| -> Vec<Option<String>> {
        (0..c.len())
            .map(|i| v.get(i).map(|s| c.strs.get(s).to_string()))
            .collect()
    };
    assert_eq!(text(a, &a.dev), text(b, &b.dev));
    assert_eq!(text(a, &a.target_comm), text(b, &b.target_comm));
    assert_eq!(text(a, &a.prev_state), text(b, &b.prev_state));
    assert_eq!(text(a, &a.func), text(b, &b.func));
}

fn sim_events(packets: usize) -> (Vec<Event>, TraceMeta) {
    use crate::model::sim::{simulate, SimOpts, Workload};
    let mut o = SimOpts::new(crate::mode::Mode::C, 3, Workload::Mixed);
    o.packets = packets;
    let s = simulate(&o);
    (s.events, s.meta)
}

/// The file rewritten with other writer settings, as another Parquet writer might.
fn rewrite(from: &Path, to: &Path, props: WriterProperties) {
    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(from).unwrap())
        .unwrap()
        .with_batch_size(1000)
        .build()
        .unwrap();
    let mut w = ArrowWriter::try_new(File::create(to).unwrap(), schema(), Some(props)).unwrap();
    for b in r {
        w.write(&b.unwrap()).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn direct_pages_read_what_the_arrow_reader_reads() {
    let dir = std::env::temp_dir().join(format!("napiscope-direct-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut events, meta) = sim_events(3000);
    // Rows the simulator does not make: nulls in unusual places, a string that is
    // no thread name, every nullable column filled.
    let mut e = Event::new(
        events.last().unwrap().ts_ns + 1,
        2,
        999_999,
        EventKind::NapiPoll,
    );
    e.comm = "backlog_napi/x".into();
    (e.vec, e.napi, e.skb, e.csd, e.len) = (Some(3), Some(u64::MAX), Some(1), Some(2), Some(7));
    (e.work, e.budget, e.ret, e.target_cpu) = (Some(-1), Some(64), Some(i32::MIN), Some(5));
    e.dev = Some("".into());
    (e.target_comm, e.prev_state, e.func) = (Some("a".into()), Some("S".into()), Some("f".into()));
    (e.napi_id, e.irq) = (Some(8193), Some(27));
    events.push(e);
    let path = dir.join("t.parquet");
    write_trace(&path, &events, &meta).unwrap();
    let arrow = |p: &Path| {
        let (file, md, _) = open_trace(p).unwrap();
        read_columns_arrow(p, file, md).unwrap()
    };
    let direct = |p: &Path| direct::read(File::open(p).unwrap());
    let want = arrow(&path);
    assert_same_cols(&direct(&path).unwrap(), &want);
    assert_same_cols(&read_columns(&path).unwrap().0, &want);

    // Other writers' choices the direct reader knows: no dictionaries (PLAIN pages),
    // data pages v2, tiny pages and row groups, no compression, delta-coded integers.
    let other = dir.join("other.parquet");
    let mut props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_encoding(Encoding::PLAIN)
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_2_0)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .set_max_row_group_size(1234);
    for c in ["pid", "work", "target_cpu", "skb"] {
        props = props.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    rewrite(&path, &other, props.build());
    assert_same_cols(&direct(&other).unwrap(), &want);

    // One it does not (strings delta-coded): read_columns falls back to Arrow.
    let props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_column_encoding(ColumnPath::from("comm"), Encoding::DELTA_BYTE_ARRAY)
        .build();
    rewrite(&path, &other, props);
    assert!(direct(&other).is_err());
    assert_same_cols(&read_columns(&other).unwrap().0, &want);

    // In time order, the reader scans seq instead of keeping it; out of order (two rows
    // swapped), it keeps it for the index to sort by, as the Arrow reader does.
    let got = direct(&path).unwrap();
    assert!(got.seq.is_empty() && got.seq_facts.as_ref().is_some_and(|f| f.complete()));
    events.swap(10, 11);
    write_trace(&path, &events, &meta).unwrap();
    let got = direct(&path).unwrap();
    assert_eq!(
        (got.seq_facts.is_none(), &got.seq),
        (true, &arrow(&path).seq)
    );
    assert_same_cols(&got, &arrow(&path));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `from` written again without the columns schema 2 added: a schema-1 file.
fn as_schema_1(from: &Path, to: &Path) {
    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(from).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let keep: Vec<usize> = (schema().fields().iter().enumerate())
        .filter(|(_, f)| !schema::may_be_absent(f.name()))
        .map(|(i, _)| i)
        .collect();
    let old = Arc::new(schema().project(&keep).unwrap());
    let mut w = ArrowWriter::try_new(File::create(to).unwrap(), old, None).unwrap();
    for b in r {
        w.write(&b.unwrap().project(&keep).unwrap()).unwrap();
    }
    w.close().unwrap();
}

#[test]
fn a_schema_1_file_reads_with_the_added_columns_null() {
    let dir = std::env::temp_dir().join(format!("napiscope-v1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut events = sample();
    events[1].napi_id = Some(8193);
    events[1].irq = Some(27);
    let (new, old) = (dir.join("new.parquet"), dir.join("old.parquet"));
    write_trace(&new, &events, &TraceMeta::default()).unwrap();
    assert_eq!(read_trace(&new).unwrap().events, events);
    as_schema_1(&new, &old);
    let (_, md, _) = open_trace(&old).unwrap();
    assert!(md.schema().field_with_name("napi_id").is_err());
    // Every reader takes it, the added columns null and the rest as written.
    events[1].napi_id = None;
    events[1].irq = None;
    assert_eq!(read_trace(&old).unwrap().events, events);
    let arrow = {
        let (file, md, _) = open_trace(&old).unwrap();
        read_columns_arrow(&old, file, md).unwrap()
    };
    let direct = direct::read(File::open(&old).unwrap()).unwrap();
    assert_same_cols(&direct, &arrow);
    assert_eq!((direct.len(), direct.napi_id.values().len()), (4, 0));
    assert_eq!(direct.napi.values(), [7]);
    // The golden schema-1 recording reads too.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../probe-cli/tests/golden/rec-complete.parquet");
    let (c, meta) = read_columns(&golden).unwrap();
    assert_eq!(meta.get("schema_version"), Some("1"));
    assert!(!c.is_empty() && c.napi_id.values().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_pages_give_errors_not_panics() {
    // Bytes overwritten inside the column data (the footer intact): the direct reader
    // gives up, read_columns then leaves the file to the Arrow reader, whose delta
    // decoder (parquet 55) panics on some of these; that panic becomes an error.
    let dir = std::env::temp_dir().join(format!("napiscope-dmg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (events, meta) = sim_events(300);
    let good = dir.join("good.parquet");
    write_trace(&good, &events, &meta).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.join("bad.parquet");
    let mut damaged = 0;
    for k in 1..40 {
        let mut b = bytes.clone();
        let at = 4 + (b.len() / 2) * k / 40;
        for x in &mut b[at..at + 6] {
            *x ^= 0xa5;
        }
        std::fs::write(&bad, &b).unwrap();
        // Whatever it accepts has every column's rows and every sparse column's values
        // (the rules index them without checks).
        if let Ok(c) = direct::read(File::open(&bad).unwrap()) {
            assert!(c.consistent(), "damage at {at}");
        }
        // Both public readers: an error or the rows, never a panic (parquet's Arrow
        // reader panics on some of these; `guarded` turns that into an error).
        for r in [
            std::panic::catch_unwind(|| read_columns(&bad).map(|_| ())),
            std::panic::catch_unwind(|| read_trace(&bad).map(|_| ())),
        ] {
            let r = r.unwrap_or_else(|_| panic!("a reader panicked on damage at {at}"));
            if let Err(e) = r {
                assert!(format!("{e:#}").contains("bad.parquet"), "{e:#}");
                damaged += 1;
            }
        }
    }
    // Most of these damage a page (some only bytes no reader checks).
    assert!(damaged > 10, "{damaged}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// trace is the ground floor: outside its tests, nothing in it names a module of the crate
/// but trace's own (`crate::check`, `crate::model`, `crate::event` ... are all above or
/// beside it; `super::` inside trace stays inside).
#[test]
fn layers_point_down() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trace");
    let mut files = 0;
    for f in std::fs::read_dir(&dir).unwrap() {
        let path = f.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name == "tests.rs" || name == "file_tests.rs" {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        // A file's own test module may use the layers above (the simulator's traces).
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                assert!(
                    rest.starts_with("trace"),
                    "{name}:{}: trace imports from above it: {line}",
                    n + 1
                );
            }
        }
    }
    assert!(files > 10, "{files} files in {}", dir.display());
}
