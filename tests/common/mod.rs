//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The real wafer data directory, if this machine has it (`$FAULTLINE_DATA_DIR`, else
/// `../shared/data` beside the repository). When it is absent the calling test reports that it
/// skipped itself — unless `FAULTLINE_REQUIRE_DATA=1`, where absence fails the test.
pub fn data_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FAULTLINE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("wafer/wafer_train.csv").is_file() {
        return Some(dir);
    }
    if std::env::var("FAULTLINE_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!(
            "{test}: FAULTLINE_REQUIRE_DATA=1 but the real wafer data is not at {}",
            dir.display()
        );
    }
    eprintln!(
        "{test}: SKIPPED — the real wafer data is absent ({}); this test runs where it exists",
        dir.display()
    );
    None
}

/// Runs the `faultline` binary with `args`.
pub fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the faultline binary runs")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
