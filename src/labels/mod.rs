//! Late labels: a wafer's true outcome, reported hours or days after faultline scored it.
//!
//! - Parsing (messages, JSON and CSV bodies → [`Label`]s or the reason each is refused) lives in
//!   the readers' crate (`crates/rows/src/labels.rs`), re-exported here, so the fuzz targets
//!   exercise it without the daemon.
//! - [`reader`]: the labels topic's reader (MQTT or Kafka) that feeds the store's join.

pub use faultline_rows::labels::*;

pub mod reader;
