//! Fuzz target: late labels, the same bytes as a labels-topic message, a JSON body and a CSV body.
//! Invariants: `faultline_fuzz::check_labels`. Replay an input: `labels < FILE`.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        faultline_fuzz::check_labels(data);
    });
}
