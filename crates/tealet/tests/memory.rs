//! Memory: 10,000 suspended tealets created and destroyed leave nothing behind, and running
//! out of memory while saving a slice is an error value (with everything handed back).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use tealet::{spawn, AllocError, Suspended};

struct Counting;
static FAIL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Only the thread under test sees failing allocations.
    static FAIL_HERE: Cell<bool> = const { Cell::new(false) };
    /// Live bytes allocated by this thread (tests run in parallel threads).
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn live_add(n: isize) {
    LIVE_BYTES.with(|c| c.set(c.get() + n));
}

fn live() -> isize {
    LIVE_BYTES.with(Cell::get)
}

fn failing_here() -> bool {
    FAIL.load(Ordering::Relaxed) && FAIL_HERE.with(Cell::get)
}

// SAFETY: forwards to `System`, counting live bytes; may return null (a valid answer).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if failing_here() {
            return std::ptr::null_mut();
        }
        live_add(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        live_add(-(l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if failing_here() {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            live_add(new as isize - l.size() as isize);
        }
        q
    }
}

#[global_allocator]
static A: Counting = Counting;

#[inline(never)]
fn park(back: Suspended) -> (Suspended, u32) {
    let pad = std::hint::black_box([7u8; 512]);
    let r = back.switch(u32::from(pad[0])).unwrap();
    (r.from.unwrap(), 0)
}

#[test]
fn ten_thousand_suspended_tealets_are_freed() {
    // Warm up once so lazily allocated runtime bits are not counted.
    drop(spawn(park).unwrap().from);
    tealet::trim_cache();
    let before = live();
    let mut handles = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let r = spawn(park).unwrap();
        assert_eq!(r.value, 7);
        handles.push(r.from.unwrap());
    }
    let saved: usize = handles.iter().map(Suspended::saved_bytes).sum();
    assert!(
        saved >= 10_000 * 512,
        "each holds its 512-byte frame: {saved}"
    );
    let during = live();
    assert!(during - before >= saved as isize);
    drop(handles);
    tealet::trim_cache();
    let after = live();
    assert_eq!(after, before, "bytes leaked: {}", after - before);
}

#[test]
fn out_of_memory_is_an_error_value() {
    // spawn: the initial save cannot allocate, so nothing starts and the closure is dropped.
    let ran = std::rc::Rc::new(Cell::new(false));
    let flag = ran.clone();
    FAIL_HERE.with(|f| f.set(true));
    tealet::trim_cache(); // recycled slices would need no allocation
    FAIL.store(true, Ordering::Relaxed);
    let res = spawn(move |back| {
        flag.set(true);
        (back, 0u8)
    });
    FAIL.store(false, Ordering::Relaxed);
    assert!(matches!(res, Err(AllocError)));
    assert!(!ran.get());
    assert_eq!(
        std::rc::Rc::strong_count(&ran),
        1,
        "the closure was dropped"
    );

    // switch: the source slice cannot be allocated; the target and value come back intact.
    let r = spawn(|back| {
        let r = back.switch(String::from("parked")).unwrap();
        (r.from.unwrap(), r.value + "!")
    })
    .unwrap();
    let h = r.from.unwrap();
    let go = String::from("go");
    tealet::trim_cache();
    FAIL.store(true, Ordering::Relaxed);
    let err = h.switch(go).err().expect("switch fails without memory");
    FAIL.store(false, Ordering::Relaxed);
    assert_eq!(err.error, AllocError);
    assert_eq!(err.value, "go");
    // The target is still suspended and can be resumed normally.
    let r = err.target.switch(err.value).unwrap();
    assert!(r.from.is_none());
    assert_eq!(r.value, "go!");
    FAIL_HERE.with(|f| f.set(false));
}
