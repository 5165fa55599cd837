//! Print the stack bytes a shallow tealet and its spawner save per switch.
use tealet::{spawn, Suspended};

fn main() {
    let r = spawn(|mut back: Suspended| loop {
        let r = back.switch(0u64).unwrap();
        back = r.from.unwrap();
        if r.value == 1 {
            return (back, 0u64);
        }
    })
    .unwrap();
    let h = r.from.unwrap();
    println!(
        "tealet slice: {} bytes, saved {}",
        h.stack_size(),
        h.saved_bytes()
    );
    let r = h.switch(0u64).unwrap();
    let h = r.from.unwrap();
    println!(
        "tealet slice after a round trip: {} bytes, saved {}",
        h.stack_size(),
        h.saved_bytes()
    );
    let _ = h.switch(1u64);
}
