//! Time the checker's phases on a trace: `cargo run --release -p analysis --example phases
//! -- FILE [ROUNDS]`. Prints the best time of each phase over the rounds (read, index,
//! rules), for profiling the checker without the CLI around it.
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: phases FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let mut best = [Duration::MAX; 3];
    for _ in 0..rounds {
        let t = Instant::now();
        let (cols, meta) = analysis::trace::read_columns(path.as_ref())?;
        let read = t.elapsed();
        let t = Instant::now();
        let report = analysis::check::check_cols(cols, &meta, None);
        let rest = t.elapsed();
        best[0] = best[0].min(read);
        best[1] = best[1].min(rest);
        best[2] = best[2].min(read + rest);
        eprintln!(
            "read {read:.2?} index+rules {rest:.2?} ({} events)",
            report.events
        );
    }
    println!(
        "best: read {:.2?}, index+rules {:.2?}, total {:.2?}",
        best[0], best[1], best[2]
    );
    Ok(())
}
