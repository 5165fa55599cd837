//! A tealet ping-pong: `cargo run --release -p tealet --example pingpong [ROUNDS]`.
use tealet::{spawn, Suspended};

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let r = spawn(|mut back: Suspended| {
        let mut n = 0u64;
        loop {
            let r = back.switch(n).unwrap();
            back = r.from.unwrap();
            n += r.value;
            if r.value == 0 {
                return (back, n);
            }
        }
    })
    .unwrap();
    let mut h = r.from.unwrap();
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        h = h.switch(1u64).unwrap().from.unwrap();
    }
    let dt = t.elapsed();
    let r = h.switch(0u64).unwrap();
    println!(
        "{} round trips in {:?}: {:.1} ns per round trip (ping sum {})",
        rounds,
        dt,
        dt.as_secs_f64() * 1e9 / f64::from(u32::try_from(rounds).unwrap_or(u32::MAX)),
        r.value
    );
}
