//! Measures the native scorer's single-threaded rows/s at one batch size and writes the rows and
//! probabilities it scored, so `benches/vs_onnxruntime.py` can time onnxruntime on the very same
//! rows and check parity. Run through that script; by hand:
//!
//! ```text
//! cargo run --release --example throughput -- --batch 256 --seconds 3 --rows-out /tmp/r.csv --probs-out /tmp/p.txt [--input wafers.csv | --rows N]
//! ```

use faultline::model::{synthetic, Model};
use faultline::row::csv::{CsvOptions, CsvRows};
use faultline::row::Schema;
use std::io::Write;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = arg(&args, "--batch").unwrap_or("256".into()).parse()?;
    let seconds: f64 = arg(&args, "--seconds").unwrap_or("3".into()).parse()?;
    let model = Model::embedded()?;
    let rows = match arg(&args, "--input") {
        Some(path) => {
            let schema = Schema::new(model.features());
            let opts = CsvOptions {
                allow_extra_columns: true,
                ..CsvOptions::default()
            };
            CsvRows::new(std::fs::File::open(path)?, &schema, opts)?.read_all()?
        }
        None => {
            let n: usize = arg(&args, "--rows").unwrap_or("4096".into()).parse()?;
            synthetic::rows(model.card(), n, 7)
        }
    };
    if let Some(path) = arg(&args, "--rows-out") {
        synthetic::write_csv(&rows, model.features(), std::fs::File::create(path)?)?;
    }
    let mut probs = vec![0f32; rows.len()];
    model.probabilities(&rows.values, &mut probs);
    if let Some(path) = arg(&args, "--probs-out") {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for p in &probs {
            writeln!(f, "{p}")?;
        }
    }
    // Time whole batches cycling over the rows, single-threaded.
    let w = model.width();
    let n_batches = (rows.len() / batch).max(1);
    let mut out = vec![0f32; batch];
    let mut scored = 0usize;
    let start = Instant::now();
    let budget = Duration::from_secs_f64(seconds);
    let mut i = 0;
    while start.elapsed() < budget {
        let b = i % n_batches;
        let lo = (b * batch) % rows.len();
        let take = batch.min(rows.len() - lo);
        model.probabilities(&rows.values[lo * w..(lo + take) * w], &mut out[..take]);
        std::hint::black_box(&out);
        scored += take;
        i += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"engine\": \"faultline-native\", \"batch\": {batch}, \"rows\": {scored}, \"seconds\": {elapsed:.3}, \"rows_per_s\": {:.0}, \"trees\": {}}}",
        scored as f64 / elapsed,
        model.tree_count()
    );
    Ok(())
}
