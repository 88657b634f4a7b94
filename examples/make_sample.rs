//! Writes the README's demo file, `examples/wafers.csv`: 50 synthetic wafers drawn from the
//! embedded model's card (the real data never ships), every tenth one moved towards what the model
//! reads as a fault until its P(fault) is twice the threshold, so the demo has faults to show.
//!
//! cargo run --example make_sample > examples/wafers.csv

use faultline::model::{synthetic, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::embedded()?;
    let mut batch = synthetic::rows(model.card(), 50, 2026);
    let w = model.width();
    for i in (4..50).step_by(10) {
        let row = synthetic::towards_fault(&model, batch.row(i), 2.0 * model.threshold());
        batch.values[i * w..(i + 1) * w].copy_from_slice(&row);
    }
    synthetic::write_csv(&batch, model.features(), std::io::stdout().lock())?;
    Ok(())
}
