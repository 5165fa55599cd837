#![allow(missing_docs)] // criterion_group! generates undocumented items
//! Switch round trip and create+finish: tealet (stack slicing) vs the `generator` crate
//! (separate mmap'd stacks), at shallow depth and with 1 KiB / 8 KiB of live stack, in one run.
//!
//! `cargo bench -p tealet --bench switch`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use generator::Gn;
use tealet::{spawn, Suspended};

/// Switch back to `back` from under `N` bytes of live stack, forever.
#[inline(never)]
fn echo_loop<const N: usize>(mut back: Suspended) -> (Suspended, u64) {
    let mut pad = [0u8; N];
    black_box(&mut pad);
    let mut v = 0u64;
    loop {
        let r = back.switch(v).unwrap();
        back = r.from.unwrap();
        v = r.value.wrapping_add(u64::from(
            pad.get(v as usize % N.max(1)).copied().unwrap_or(0),
        ));
        if r.value == u64::MAX {
            return (back, v);
        }
    }
}

fn tealet_round_trip<const N: usize>(c: &mut Criterion, name: &str) {
    c.bench_function(&format!("round_trip/{name}/tealet"), |b| {
        // Spawn from the frame that switches, as a real program would, so the round trip
        // measures the tealet's own stack and not the benchmark harness's frames.
        b.iter_custom(|iters| {
            let mut h = spawn(echo_loop::<N>).unwrap().from;
            let start = std::time::Instant::now();
            for _ in 0..iters {
                let r = h.take().unwrap().switch(black_box(1u64)).unwrap();
                h = r.from;
            }
            let t = start.elapsed();
            let r = h.take().unwrap().switch(u64::MAX).unwrap();
            assert!(r.from.is_none());
            t
        });
    });
}

fn generator_round_trip<const N: usize>(c: &mut Criterion, name: &str) {
    let mut g = Gn::<u64>::new_scoped_opt(0x10000 / 8 * 8, |mut s| {
        let mut pad = [0u8; N];
        black_box(&mut pad);
        let mut v = 0u64;
        loop {
            let a = s.yield_(v).unwrap_or(0);
            v = a.wrapping_add(u64::from(
                pad.get(v as usize % N.max(1)).copied().unwrap_or(0),
            ));
        }
    });
    g.resume();
    c.bench_function(&format!("round_trip/{name}/generator"), |b| {
        b.iter(|| g.send(black_box(1u64)));
    });
}

fn round_trips(c: &mut Criterion) {
    tealet_round_trip::<0>(c, "shallow");
    generator_round_trip::<0>(c, "shallow");
    tealet_round_trip::<1024>(c, "1KiB");
    generator_round_trip::<1024>(c, "1KiB");
    tealet_round_trip::<8192>(c, "8KiB");
    generator_round_trip::<8192>(c, "8KiB");
}

#[inline(never)]
fn finish_at<const N: usize>(back: Suspended) -> (Suspended, u64) {
    let mut pad = [0u8; N];
    black_box(&mut pad);
    (back, u64::from(pad.first().copied().unwrap_or(0)))
}

fn create_finish(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_finish");
    for (name, f) in [
        (
            "shallow",
            finish_at::<0> as fn(Suspended) -> (Suspended, u64),
        ),
        ("1KiB", finish_at::<1024>),
        ("8KiB", finish_at::<8192>),
    ] {
        group.bench_function(BenchmarkId::new("tealet", name), |b| {
            b.iter(|| spawn(f).unwrap().value);
        });
    }
    group.bench_function(BenchmarkId::new("generator", "shallow"), |b| {
        b.iter(|| {
            let mut g = Gn::<()>::new_scoped(|_s| black_box(0u64));
            g.resume()
        });
    });
    group.bench_function(BenchmarkId::new("generator", "8KiB"), |b| {
        b.iter(|| {
            let mut g = Gn::<()>::new_scoped_opt(0x10000 / 8 * 8, |_s| {
                let mut pad = [0u8; 8192];
                black_box(&mut pad);
                u64::from(pad.first().copied().unwrap_or(0))
            });
            g.resume()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1)).sample_size(30);
    targets = round_trips, create_finish
}
criterion_main!(benches);
