//! Fuzz target: a wafer CSV through the streaming CSV reader, batch by batch.
//! Invariants: `faultline_fuzz::check_csv`. Replay an input: `csv_rows < FILE`.

fn main() {
    let (schema, _) = faultline_fuzz::model_schema();
    afl::fuzz!(|data: &[u8]| {
        faultline_fuzz::check_csv(data, &schema);
    });
}
