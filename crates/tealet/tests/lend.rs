//! Memory lent for a suspended context's saved stack ([`Transit::lend`]): the stack comes back
//! intact whether the loan holds all of it, part of it, or nothing, and the heap holds only
//! what did not fit.

use std::ptr::NonNull;
use tealet::{spawn, Suspended, Transit};

/// Switch to `to`, first lending `loan` to the context being suspended (the running one).
fn switch_lending(to: Suspended, value: u64, loan: &mut [u8]) -> (Suspended, u64) {
    let at = NonNull::new(loan.as_mut_ptr()).expect("a Vec's buffer is not null");
    // SAFETY: `loan` belongs to the running context, which touches it no more until it is
    // resumed (this function returns only then), and it outlives the switch.
    unsafe { Transit::current().lend(at, loan.len()) };
    let r = to.switch(value).unwrap();
    (r.from.expect("the other side stays suspended"), r.value)
}

/// Recurse `depth` frames, each holding a 256-byte array checked after every switch.
#[inline(never)]
fn deep(depth: u32, tag: u64, mut back: Suspended, loan: &mut [u8]) -> (Suspended, u64) {
    let mut pad = [0u64; 32];
    for (i, p) in pad.iter_mut().enumerate() {
        *p = tag ^ (u64::from(depth) << 8) ^ i as u64;
    }
    let (b, v) = switch_lending(back, tag * 1000 + u64::from(depth), loan);
    back = b;
    let mut sum = v;
    if depth > 0 {
        let (b, v) = deep(depth - 1, tag, back, loan);
        back = b;
        sum += v;
    }
    for (i, p) in std::hint::black_box(&pad).iter().enumerate() {
        assert_eq!(
            *p,
            tag ^ (u64::from(depth) << 8) ^ i as u64,
            "frame {depth} damaged"
        );
    }
    (back, sum)
}

fn run_with_loan(loan_bytes: usize) -> (usize, usize) {
    const DEPTH: u32 = 12;
    let r = spawn(move |back: Suspended| {
        let mut loan = vec![0u8; loan_bytes];
        let (back, sum) = deep(DEPTH, 7, back, &mut loan);
        (back, sum + 1)
    })
    .unwrap();
    assert_eq!(r.value, 7 * 1000 + u64::from(DEPTH));
    let mut h = r.from.unwrap();
    let (saved, heap) = (h.saved_bytes(), h.heap_bytes());
    // Main runs deeper than the tealet's frames between switches, so each suspended stack is
    // saved whole, some of it lazily, by later switches.
    let mut main_loan = vec![0u8; 256];
    let mut total = 0;
    for i in 0..DEPTH {
        let (t, v) = switch_lending(h, u64::from(i), &mut main_loan);
        assert_eq!(v, 7 * 1000 + u64::from(DEPTH - 1 - i));
        total += u64::from(i);
        h = t;
    }
    let r = h.switch(100u64).unwrap();
    assert!(r.from.is_none(), "the tealet finished");
    assert_eq!(r.value, total + 100 + 1);
    (saved, heap)
}

#[test]
fn a_large_loan_keeps_the_saved_stack_off_the_heap() {
    let (saved, heap) = run_with_loan(64 * 1024);
    assert!(saved > 0);
    assert_eq!(heap, 0, "{saved} bytes saved, {heap} on the heap");
}

#[test]
fn a_small_loan_takes_what_fits_and_the_heap_the_rest() {
    let (saved, heap) = run_with_loan(100);
    assert!(saved > 100, "{saved}");
    assert_eq!(heap, saved - 100);
}

#[test]
fn no_loan_saves_to_the_heap_as_before() {
    let (saved, heap) = run_with_loan(0);
    assert_eq!(heap, saved);
}

#[test]
fn a_loan_is_taken_by_the_next_switch_only() {
    // Lend, then switch: the loan goes with the suspended main.  The tealet's own switch
    // back, which lends nothing, must not reuse it.
    let mut loan = vec![0u8; 64 * 1024];
    let r = spawn(|back: Suspended| {
        let r = back.switch(1u64).unwrap();
        let back = r.from.unwrap();
        let r = back.switch(2u64).unwrap();
        (r.from.unwrap(), 3u64)
    })
    .unwrap();
    assert_eq!(r.value, 1);
    let (h, v) = switch_lending(r.from.unwrap(), 0, &mut loan);
    assert_eq!(v, 2);
    assert!(h.saved_bytes() > 0);
    assert_eq!(h.heap_bytes(), h.saved_bytes(), "the tealet lent nothing");
    let r = h.switch(0u64).unwrap();
    assert!(r.from.is_none());
    assert_eq!(r.value, 3);
}

thread_local! {
    static MAIN: std::cell::RefCell<Option<Suspended>> = const { std::cell::RefCell::new(None) };
}

/// What the loan of a dropped context looked like (see `a_dropped_context_leaves_its_loan_alone`).
struct Dropped {
    saved: usize,
}

/// The byte the loan is filled with before it is lent: what was not saved into it stays so.
const UNTOUCHED: u8 = 0xA5;

/// Recurse `depth` frames (each with a 256-byte array), then spawn a tealet there that drops
/// the handle of the context it was spawned from (`a`, whose stack below the spawn point was
/// saved into its loan, and whose frames above it are still in place) and finishes back to
/// main, telling how much had been saved.
#[inline(never)]
fn spawn_dropper(depth: u32, loan: NonNull<u8>, len: usize) -> Dropped {
    let pad = [u64::from(depth); 32];
    if depth > 0 {
        let v = spawn_dropper(depth - 1, loan, len);
        assert_eq!(std::hint::black_box(pad)[7], u64::from(depth));
        return v;
    }
    // SAFETY: the loan belongs to main's `Vec`, untouched until this context is resumed or
    // dropped (it is dropped below, by the tealet spawned here).
    unsafe { Transit::current().lend(loan, len) };
    let r = spawn(move |a: Suspended| {
        let saved = a.saved_bytes();
        assert!(saved > 0, "the frames below the spawn point were saved");
        assert!(
            saved < a.stack_size(),
            "its upper frames are still in place"
        );
        assert_eq!(a.heap_bytes(), 0, "all of it went into the loan");
        drop(a);
        (
            MAIN.with(|m| m.borrow_mut().take()).unwrap(),
            Dropped { saved },
        )
    });
    match r {
        Ok(_) => unreachable!("the context that spawned it was dropped: never resumed"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_dropped_context_leaves_its_loan_alone() {
    let mut loan = vec![UNTOUCHED; 64 * 1024];
    let at = NonNull::new(loan.as_mut_ptr()).unwrap();
    let len = loan.len();
    let r = spawn(move |main: Suspended| {
        MAIN.with(|m| *m.borrow_mut() = Some(main));
        let d = spawn_dropper(20, at, len);
        unreachable!("never resumed: {}", d.saved)
    })
    .unwrap();
    // The dropper finished to us: its last switch saved every slice still in the chain below
    // our stack.  Had the dropped context stayed linked, its in-place frames would have gone
    // into the loan then, after the bytes it had saved.  (Only the untouched part is read:
    // saved stack bytes may be uninitialized, which memcheck would flag.)
    assert!(r.from.is_none());
    let Dropped { saved } = r.value;
    assert!(
        loan[saved..].iter().all(|&b| b == UNTOUCHED),
        "the loan changed after its context was dropped"
    );
}
