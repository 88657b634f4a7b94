//! Scorer throughput at batch 1, 16, 256 and 4096 on synthetic rows drawn from the embedded model's
//! card. `benches/vs_onnxruntime.py` runs onnxruntime on the same graph and rows for the ratio.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use faultline::model::{synthetic, Explain, Model, Policy};
use std::hint::black_box;

fn scorer(c: &mut Criterion) {
    let model = Model::embedded().expect("the embedded model loads");
    let rows = synthetic::rows(model.card(), 4096, 7);
    let mut group = c.benchmark_group("probabilities");
    for batch in [1usize, 16, 256, 4096] {
        let slice = &rows.values[..batch * model.width()];
        let mut out = vec![0f32; batch];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, _| {
            b.iter(|| model.probabilities(black_box(slice), black_box(&mut out)))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("verdicts_with_top_sensors");
    let mut batch = rows.clone();
    batch.ids.truncate(256);
    batch.labels.truncate(256);
    batch.values.truncate(256 * model.width());
    group.throughput(Throughput::Elements(256));
    group.bench_function("256", |b| b.iter(|| model.score(black_box(&batch))));
    group.finish();
    // The cost of the model's own explanations: faults only (the default; synthetic rows rarely
    // reach the card's threshold, so a threshold at the 90th percentile makes ~10% faults, as a
    // plant would see), every row, and none.
    let mut p = vec![0f32; 256];
    model.probabilities(&batch.values, &mut p);
    p.sort_by(f32::total_cmp);
    let t = p[230];
    let mut group = c.benchmark_group("verdicts_256_contributions");
    group.throughput(Throughput::Elements(256));
    for (name, top_k, all_rows) in [
        ("none", 0, false),
        ("faults_only", 5, false),
        ("all_rows", 5, true),
    ] {
        let m = Model::embedded().expect("loads").with_policy(&Policy {
            threshold: Some(t),
            budget: None,
            explain: Explain {
                top_k,
                all_rows,
                unusual_all_rows: true,
            },
        });
        group.bench_function(name, |b| b.iter(|| m.score(black_box(&batch))));
    }
    group.finish();
}

criterion_group!(benches, scorer);
criterion_main!(benches);
