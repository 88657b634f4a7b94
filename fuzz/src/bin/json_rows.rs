//! Fuzz target: one bus message (MQTT payload / Kafka value) through the JSON row decoder.
//! Invariants: `faultline_fuzz::check_json`. Replay an input: `json_rows < FILE`.

fn main() {
    let (schema, features) = faultline_fuzz::model_schema();
    afl::fuzz!(|data: &[u8]| {
        faultline_fuzz::check_json(data, &schema, &features);
    });
}
