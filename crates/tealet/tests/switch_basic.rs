//! Public-API tests: value passing, deep overlapping stacks, creation from depth, finishing.

use tealet::{spawn, spawn_finishing, Resumed, Suspended, Transit};

#[test]
fn ping_pong_passes_values_both_ways() {
    let Resumed { from, value } = spawn(|mut back: Suspended| {
        let mut total = 0u64;
        let mut n = 0u64;
        loop {
            let r = back.switch(total).unwrap();
            back = r.from.expect("main is suspended, not finished");
            n += 1;
            total += r.value;
            if n == 100 {
                return (back, total + 1_000_000);
            }
        }
    })
    .unwrap();
    assert_eq!(value, 0);
    let mut h = from.unwrap();
    let mut expect = 0;
    for i in 1..100u64 {
        let r = h.switch(i).unwrap();
        expect += i;
        assert_eq!(r.value, expect);
        h = r.from.unwrap();
    }
    let r = h.switch(100u64).unwrap();
    assert!(r.from.is_none(), "the tealet finished");
    assert_eq!(r.value, expect + 100 + 1_000_000);
}

#[test]
fn a_tealet_finishing_in_transit_delivers_its_value() {
    let r = spawn_finishing(|back: Suspended| {
        let r = back.switch(String::from("started")).unwrap();
        let s = r.value + " and finished";
        Transit::current().finish(r.from.unwrap(), s)
    })
    .unwrap();
    assert_eq!(r.value, "started");
    let r = r.from.unwrap().switch(String::from("resumed")).unwrap();
    assert!(r.from.is_none(), "the tealet finished");
    assert_eq!(r.value, "resumed and finished");
}

#[test]
fn strings_and_boxes_cross_switches_owned() {
    let r = spawn(|back| {
        let r = back.switch(String::from("hello")).unwrap();
        let s = r.value + " world";
        (r.from.unwrap(), s)
    })
    .unwrap();
    assert_eq!(r.value, "hello");
    let r = r.from.unwrap().switch(r.value.clone()).unwrap();
    assert!(r.from.is_none());
    assert_eq!(r.value, "hello world");
}

/// Recurse `depth` frames, each holding a 256-byte array that is checked on the way back up,
/// switching to the other side at every level on the way down.
#[inline(never)]
fn deep(depth: u32, tag: u64, mut back: Suspended, log: &mut Vec<u64>) -> Suspended {
    let mut pad = [0u64; 32];
    for (i, p) in pad.iter_mut().enumerate() {
        *p = tag ^ (u64::from(depth) << 8) ^ i as u64;
    }
    let r = back.switch(tag * 1000 + u64::from(depth)).unwrap();
    back = r.from.unwrap();
    log.push(r.value);
    if depth > 0 {
        back = deep(depth - 1, tag, back, log);
    }
    for (i, p) in std::hint::black_box(&pad).iter().enumerate() {
        assert_eq!(
            *p,
            tag ^ (u64::from(depth) << 8) ^ i as u64,
            "stack frame corrupted"
        );
    }
    back
}

#[test]
fn two_deep_tealets_with_overlapping_stacks_ping_pong() {
    const DEPTH: u32 = 300;
    let a = spawn(|back| {
        let mut log = Vec::new();
        let back = deep(DEPTH, 1, back, &mut log);
        (back, log.len() as u64 * 10 + 1)
    })
    .unwrap();
    let b = spawn(|back| {
        let mut log = Vec::new();
        let back = deep(DEPTH, 2, back, &mut log);
        (back, log.len() as u64 * 10 + 2)
    })
    .unwrap();
    // Both start on the same region of the stack and go 300 frames deep while alternating.
    assert_eq!(a.value, 1000 + u64::from(DEPTH));
    assert_eq!(b.value, 2000 + u64::from(DEPTH));
    let (mut ha, mut hb) = (a.from.unwrap(), b.from.unwrap());
    let mut deepest = 0;
    let mut expect_a = u64::from(DEPTH);
    let mut expect_b = u64::from(DEPTH);
    loop {
        let ra = ha.switch(7u64).unwrap();
        let rb = hb.switch(8u64).unwrap();
        match (ra.from, rb.from) {
            (Some(x), Some(y)) => {
                expect_a -= 1;
                expect_b -= 1;
                assert_eq!(ra.value, 1000 + expect_a);
                assert_eq!(rb.value, 2000 + expect_b);
                deepest = deepest.max(x.stack_size()).max(y.stack_size());
                ha = x;
                hb = y;
            }
            (None, None) => {
                assert!(deepest > 250 * 256, "stacks got {deepest} bytes deep");
                assert_eq!(expect_a, 0);
                assert_eq!(expect_b, 0);
                assert_eq!(ra.value, (u64::from(DEPTH) + 1) * 10 + 1);
                assert_eq!(rb.value, (u64::from(DEPTH) + 1) * 10 + 2);
                break;
            }
            _ => panic!("tealets finished out of step"),
        }
    }
}

#[inline(never)]
fn at_depth<R>(n: u32, f: &mut dyn FnMut() -> R) -> R {
    let pad = std::hint::black_box([n; 64]);
    let r = if n == 0 { f() } else { at_depth(n - 1, f) };
    assert_eq!(std::hint::black_box(pad)[63], n);
    r
}

#[test]
fn tealet_created_deep_in_the_stack_and_resumed_from_shallow() {
    let h = at_depth(500, &mut || {
        let r = spawn(|back| {
            let r = back.switch(1u32).unwrap();
            let r = r.from.unwrap().switch(r.value + 1).unwrap();
            (r.from.unwrap(), r.value + 1)
        })
        .unwrap();
        assert_eq!(r.value, 1);
        r.from.unwrap()
    });
    // Resume it from a shallow frame: the deep region must be restored intact.
    let r = h.switch(10u32).unwrap();
    assert_eq!(r.value, 11);
    // And from a deeper frame than where it was made.
    let mut h = Some(r.from.unwrap());
    let r = at_depth(800, &mut || h.take().unwrap().switch(20u32).unwrap());
    assert!(r.from.is_none());
    assert_eq!(r.value, 21);
}

#[test]
fn nested_spawn_inside_a_tealet() {
    let r = spawn(|back| {
        // A grandchild spawned from inside a tealet, returning into its spawner.
        let inner = spawn(|b2| (b2, 5u32)).unwrap();
        assert!(inner.from.is_none());
        (back, inner.value * 2)
    })
    .unwrap();
    assert!(r.from.is_none());
    assert_eq!(r.value, 10);
}

#[test]
fn run_can_finish_into_a_third_context() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let parked: Rc<RefCell<Option<Suspended>>> = Rc::new(RefCell::new(None));
    let p2 = parked.clone();
    // A suspends itself right away; later it is resumed by B *finishing*, so `from` is None,
    // and it finds main's handle where B parked it.
    let a = spawn(move |back| {
        let r = back.switch(0u32).unwrap();
        assert!(r.from.is_none(), "resumed by a finishing tealet");
        let main = p2.borrow_mut().take().unwrap();
        (main, r.value + 1)
    })
    .unwrap();
    let ha = a.from.unwrap();
    let p3 = parked.clone();
    let b = spawn(move |back_to_main| {
        *p3.borrow_mut() = Some(back_to_main);
        (ha, 7u32)
    })
    .unwrap();
    assert!(b.from.is_none(), "main was resumed by A finishing");
    assert_eq!(b.value, 8);
    assert!(parked.borrow().is_none());
}

#[test]
fn dropping_a_suspended_handle_destroys_it_without_resuming() {
    use std::cell::Cell;
    use std::rc::Rc;
    let resumed = Rc::new(Cell::new(false));
    let flag = resumed.clone();
    let r = spawn(move |back| {
        let r = back.switch(1u8).unwrap();
        flag.set(true);
        (r.from.unwrap(), 2u8)
    })
    .unwrap();
    let h = r.from.unwrap();
    assert!(h.stack_size() > 0);
    h.destroy();
    assert!(!resumed.get());
    // The captured Rc on the destroyed stack is leaked, never dropped: 2 strong refs remain.
    assert_eq!(Rc::strong_count(&resumed), 2);
}

#[test]
fn a_backtrace_taken_in_a_tealet_ends_at_its_bottom_frame() {
    // After the spawner has moved on (here: deeper, into another call), the bytes above the
    // tealet's bottom belong to another context; an unwinder that walked on from the tealet's
    // bottom frame would read them as frames (a panic's backtrace crashed doing so).
    let r = spawn(|back: Suspended| {
        let r = back.switch(String::new()).unwrap();
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        (r.from.unwrap(), trace)
    })
    .unwrap();
    let trace = at_depth(40, &mut || {
        let r = spawn(|b: Suspended| (b, String::new())).unwrap(); // reuses the region
        assert!(r.from.is_none());
        r.value
    });
    assert!(trace.is_empty());
    let r = r.from.unwrap().switch(String::new()).unwrap();
    assert!(r.from.is_none());
    let trace = r.value;
    let frames: Vec<&str> = trace
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .collect();
    let bottom = frames
        .iter()
        .position(|l| l.contains("tealet::run_new_tealet"))
        .unwrap_or_else(|| panic!("no bottom frame in:\n{trace}"));
    assert!(
        frames[bottom + 1..]
            .iter()
            .all(|l| !l.contains("spawn") && !l.contains("a_backtrace_taken_in")),
        "the backtrace went past the tealet's bottom:\n{trace}"
    );
}
