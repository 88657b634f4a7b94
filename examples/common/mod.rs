//! Helpers shared by the examples (each example uses some of them).
#![allow(dead_code)]

use faultline::model::{synthetic, Model};
use faultline::row::csv::{CsvOptions, CsvRows};
use faultline::row::{RowBatch, Schema};

/// The value after `name` on the command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The wafers in the CSV at `path`, or 2,000 synthetic ones drawn from the model card.
pub fn wafer_rows(path: Option<String>, model: &Model) -> anyhow::Result<RowBatch> {
    Ok(match path {
        Some(path) => CsvRows::new(
            std::fs::File::open(path)?,
            &Schema::new(model.features()),
            CsvOptions {
                allow_extra_columns: true,
                batch_rows: 4096,
            },
        )?
        .read_all()?,
        None => synthetic::rows(model.card(), 2000, 3),
    })
}
