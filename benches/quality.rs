//! What `GET /api/quality` computes on each poll: a model's live figures with their bootstrap
//! intervals (and the paired comparison with a shadow) over windows of 1,000 (`[labels]
//! window_rows`' default) to 100,000 labelled wafers, 6% of them faulty as in the training data.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faultline::quality;
use std::hint::black_box;

/// `n` (P(fault), faulty) pairs where the faulty score higher on the whole, from a fixed seed.
fn pairs(n: usize) -> Vec<(f32, bool)> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n)
        .map(|_| {
            let faulty = next() < 0.06;
            let p = (next() + if faulty { 0.3 } else { 0.0 }).min(1.0);
            (p, faulty)
        })
        .collect()
}

fn live_quality(c: &mut Criterion) {
    let mut group = c.benchmark_group("quality");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let at_threshold = pairs(n);
        let both: Vec<(f32, f32, bool)> = at_threshold
            .iter()
            .zip(pairs(n))
            .map(|(&(a, y), (b, _))| (a, b, y))
            .collect();
        group.bench_with_input(BenchmarkId::new("compute", n), &n, |b, _| {
            b.iter(|| quality::compute(black_box(&at_threshold), 0.5))
        });
        group.bench_with_input(BenchmarkId::new("compare", n), &n, |b, _| {
            b.iter(|| quality::compare(black_box(&both)))
        });
    }
    group.finish();
}

criterion_group!(benches, live_quality);
criterion_main!(benches);
