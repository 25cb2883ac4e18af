//! The trace file: Parquet, one row per event, key/value metadata in the footer.
//! Schema documented in docs/schema.md; `SCHEMA_VERSION` changes when a column changes.

use std::{collections::BTreeMap, fs::File, path::Path, sync::Arc};

use anyhow::{anyhow, bail, Context as _, Result};
use arrow::{
    array::{
        Array, ArrayRef, Int32Array, Int32Builder, RecordBatch, StringArray, StringBuilder,
        UInt32Array, UInt32Builder, UInt64Array, UInt64Builder,
    },
    datatypes::{DataType, Field, Schema, SchemaRef},
};
use parquet::{
    arrow::{arrow_reader::ParquetRecordBatchReaderBuilder, ArrowWriter},
    basic::Compression,
    file::properties::WriterProperties,
    format::KeyValue,
};

use crate::event::{Ctx, Event, EventKind};

pub const SCHEMA_VERSION: &str = "1";
/// Metadata keys are prefixed so they do not clash with other writers' keys.
pub const META_PREFIX: &str = "napiscope.";
const BATCH_ROWS: usize = 65_536;
/// Rows buffered before they go to the Parquet writer (which builds row groups of
/// 4 × BATCH_ROWS); small enough that the progress line's size estimate moves.
const WRITE_ROWS: usize = 8_192;

pub fn schema() -> SchemaRef {
    use DataType::*;
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        f("ts_ns", UInt64, false),
        f("cpu", UInt32, false),
        f("seq", UInt64, false),
        f("event", Utf8, false),
        f("ctx", Utf8, false),
        f("comm", Utf8, false),
        f("pid", Int32, false),
        f("vec", UInt32, true),
        f("napi", UInt64, true),
        f("skb", UInt64, true),
        f("csd", UInt64, true),
        f("dev", Utf8, true),
        f("len", UInt32, true),
        f("work", Int32, true),
        f("budget", Int32, true),
        f("ret", Int32, true),
        f("target_cpu", Int32, true),
        f("target_comm", Utf8, true),
        f("target_pid", Int32, true),
        f("prev_state", Utf8, true),
        f("func", Utf8, true),
    ]))
}

/// Recording metadata (kernel, mode, clock, losses ...), stored as Parquet key/value pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceMeta(pub BTreeMap<String, String>);

impl TraceMeta {
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// Lost events per CPU, as recorded (`lost_per_cpu`, a JSON array).
    pub fn lost_per_cpu(&self) -> Vec<u64> {
        self.get("lost_per_cpu")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Columns {
    ts_ns: UInt64Builder,
    cpu: UInt32Builder,
    seq: UInt64Builder,
    event: StringBuilder,
    ctx: StringBuilder,
    comm: StringBuilder,
    pid: Int32Builder,
    vec: UInt32Builder,
    napi: UInt64Builder,
    skb: UInt64Builder,
    csd: UInt64Builder,
    dev: StringBuilder,
    len: UInt32Builder,
    work: Int32Builder,
    budget: Int32Builder,
    ret: Int32Builder,
    target_cpu: Int32Builder,
    target_comm: StringBuilder,
    target_pid: Int32Builder,
    prev_state: StringBuilder,
    func: StringBuilder,
    rows: usize,
}

impl Columns {
    fn push(&mut self, e: &Event) {
        self.ts_ns.append_value(e.ts_ns);
        self.cpu.append_value(e.cpu);
        self.seq.append_value(e.seq);
        self.event.append_value(e.event.name());
        self.ctx.append_value(e.ctx.name());
        self.comm.append_value(&e.comm);
        self.pid.append_value(e.pid);
        self.vec.append_option(e.vec);
        self.napi.append_option(e.napi);
        self.skb.append_option(e.skb);
        self.csd.append_option(e.csd);
        self.dev.append_option(e.dev.as_deref());
        self.len.append_option(e.len);
        self.work.append_option(e.work);
        self.budget.append_option(e.budget);
        self.ret.append_option(e.ret);
        self.target_cpu.append_option(e.target_cpu);
        self.target_comm.append_option(e.target_comm.as_deref());
        self.target_pid.append_option(e.target_pid);
        self.prev_state.append_option(e.prev_state.as_deref());
        self.func.append_option(e.func.as_deref());
        self.rows += 1;
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.ts_ns.finish()),
            Arc::new(self.cpu.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.event.finish()),
            Arc::new(self.ctx.finish()),
            Arc::new(self.comm.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.vec.finish()),
            Arc::new(self.napi.finish()),
            Arc::new(self.skb.finish()),
            Arc::new(self.csd.finish()),
            Arc::new(self.dev.finish()),
            Arc::new(self.len.finish()),
            Arc::new(self.work.finish()),
            Arc::new(self.budget.finish()),
            Arc::new(self.ret.finish()),
            Arc::new(self.target_cpu.finish()),
            Arc::new(self.target_comm.finish()),
            Arc::new(self.target_pid.finish()),
            Arc::new(self.prev_state.finish()),
            Arc::new(self.func.finish()),
        ];
        self.rows = 0;
        Ok(RecordBatch::try_new(schema(), cols)?)
    }
}

/// Streams events into a Parquet file. Row groups are written as they fill, so a long
/// recording does not grow in memory; `finish` writes the footer (with the final metadata)
/// and must run on every exit path — `record` calls it on Ctrl-C and SIGTERM too.
pub struct TraceWriter {
    writer: ArrowWriter<File>,
    cols: Columns,
    rows: u64,
}

impl TraceWriter {
    pub fn create(path: &Path) -> Result<TraceWriter> {
        let file = File::create(path)
            .with_context(|| format!("cannot create output file {}", path.display()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(BATCH_ROWS * 4)
            .build();
        let writer = ArrowWriter::try_new(file, schema(), Some(props))?;
        Ok(TraceWriter {
            writer,
            cols: Columns::default(),
            rows: 0,
        })
    }

    pub fn push(&mut self, e: &Event) -> Result<()> {
        self.cols.push(e);
        self.rows += 1;
        if self.cols.rows >= WRITE_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.cols.rows > 0 {
            let batch = self.cols.finish()?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written so far plus the row group being built (an estimate of the file size).
    pub fn bytes_written(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Write the remaining rows, the metadata and the footer. Returns the file size.
    pub fn finish(mut self, meta: &TraceMeta) -> Result<u64> {
        self.flush_batch()?;
        let mut meta = meta.clone();
        meta.set("schema_version", SCHEMA_VERSION);
        meta.set("rows", self.rows.to_string());
        for (k, v) in &meta.0 {
            self.writer
                .append_key_value_metadata(KeyValue::new(format!("{META_PREFIX}{k}"), v.clone()));
        }
        let file = self.writer.into_inner()?;
        file.sync_all()?;
        Ok(file.metadata()?.len())
    }
}

pub fn write_trace(path: &Path, events: &[Event], meta: &TraceMeta) -> Result<u64> {
    let mut w = TraceWriter::create(path)?;
    for e in events {
        w.push(e)?;
    }
    w.finish(meta)
}

#[derive(Debug, Default)]
pub struct Trace {
    pub events: Vec<Event>,
    pub meta: TraceMeta,
}

/// Read a napiscope trace. Errors name the file and what is wrong with it (not Parquet,
/// truncated, another schema) — `check` and `report` turn them into exit code 2.
pub fn read_trace(path: &Path) -> Result<Trace> {
    let file = File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    let len = file.metadata()?.len();
    if len == 0 {
        bail!(
            "{} is empty (0 bytes): not a napiscope trace",
            path.display()
        );
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        anyhow!(
            "{} is not a readable Parquet file ({e}); it may be truncated or not a trace \
             — re-record it with `napiscope record`",
            path.display()
        )
    })?;
    let mut meta = TraceMeta::default();
    if let Some(kvs) = builder.metadata().file_metadata().key_value_metadata() {
        for kv in kvs {
            if let (Some(k), Some(v)) = (kv.key.strip_prefix(META_PREFIX), &kv.value) {
                meta.set(k, v.clone());
            }
        }
    }
    check_schema(builder.schema(), path)?;
    let reader = builder.with_batch_size(BATCH_ROWS).build()?;
    let mut events = Vec::new();
    for batch in reader {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        decode_batch(&batch, &mut events)
            .with_context(|| format!("decoding {}", path.display()))?;
    }
    Ok(Trace { events, meta })
}

fn check_schema(found: &SchemaRef, path: &Path) -> Result<()> {
    for want in schema().fields() {
        match found.field_with_name(want.name()) {
            Ok(f) if f.data_type() == want.data_type() => {}
            Ok(f) => bail!(
                "{}: column `{}` has type {} but a napiscope trace has {}: not a napiscope \
                 trace (schema {SCHEMA_VERSION})",
                path.display(),
                want.name(),
                f.data_type(),
                want.data_type()
            ),
            Err(_) => bail!(
                "{}: column `{}` is missing: not a napiscope trace (schema {SCHEMA_VERSION}); \
                 record one with `napiscope record` or `napiscope simulate`",
                path.display(),
                want.name()
            ),
        }
    }
    Ok(())
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| anyhow!("column `{name}` missing or of the wrong type"))
}

fn opt<A: Array, T>(a: &A, i: usize, get: impl Fn(&A, usize) -> T) -> Option<T> {
    if a.is_null(i) {
        None
    } else {
        Some(get(a, i))
    }
}

fn decode_batch(b: &RecordBatch, out: &mut Vec<Event>) -> Result<()> {
    let ts = col::<UInt64Array>(b, "ts_ns")?;
    let cpu = col::<UInt32Array>(b, "cpu")?;
    let seq = col::<UInt64Array>(b, "seq")?;
    let event = col::<StringArray>(b, "event")?;
    let ctx = col::<StringArray>(b, "ctx")?;
    let comm = col::<StringArray>(b, "comm")?;
    let pid = col::<Int32Array>(b, "pid")?;
    let vec = col::<UInt32Array>(b, "vec")?;
    let napi = col::<UInt64Array>(b, "napi")?;
    let skb = col::<UInt64Array>(b, "skb")?;
    let csd = col::<UInt64Array>(b, "csd")?;
    let dev = col::<StringArray>(b, "dev")?;
    let len = col::<UInt32Array>(b, "len")?;
    let work = col::<Int32Array>(b, "work")?;
    let budget = col::<Int32Array>(b, "budget")?;
    let ret = col::<Int32Array>(b, "ret")?;
    let target_cpu = col::<Int32Array>(b, "target_cpu")?;
    let target_comm = col::<StringArray>(b, "target_comm")?;
    let target_pid = col::<Int32Array>(b, "target_pid")?;
    let prev_state = col::<StringArray>(b, "prev_state")?;
    let func = col::<StringArray>(b, "func")?;
    let s = |a: &StringArray, i: usize| a.value(i).to_string();
    for i in 0..b.num_rows() {
        let kind = EventKind::from_name(event.value(i))
            .ok_or_else(|| anyhow!("row {i}: unknown event `{}`", event.value(i)))?;
        let c = Ctx::from_name(ctx.value(i))
            .ok_or_else(|| anyhow!("row {i}: unknown ctx `{}`", ctx.value(i)))?;
        out.push(Event {
            ts_ns: ts.value(i),
            cpu: cpu.value(i),
            seq: seq.value(i),
            event: kind,
            ctx: c,
            comm: comm.value(i).to_string(),
            pid: pid.value(i),
            vec: opt(vec, i, UInt32Array::value),
            napi: opt(napi, i, UInt64Array::value),
            skb: opt(skb, i, UInt64Array::value),
            csd: opt(csd, i, UInt64Array::value),
            dev: opt(dev, i, s),
            len: opt(len, i, UInt32Array::value),
            work: opt(work, i, Int32Array::value),
            budget: opt(budget, i, Int32Array::value),
            ret: opt(ret, i, Int32Array::value),
            target_cpu: opt(target_cpu, i, Int32Array::value),
            target_comm: opt(target_comm, i, s),
            target_pid: opt(target_pid, i, Int32Array::value),
            prev_state: opt(prev_state, i, s),
            func: opt(func, i, s),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
