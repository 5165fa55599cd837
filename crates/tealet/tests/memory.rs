//! Memory: 10,000 suspended tealets created and destroyed leave nothing behind, and running
//! out of memory while saving a slice is an error value (with everything handed back).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use tealet::{spawn, AllocError, Suspended};

struct Counting;
static FAIL: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Only the thread under test sees failing allocations.
    static FAIL_HERE: Cell<bool> = const { Cell::new(false) };
    /// Live bytes allocated by this thread (tests run in parallel threads).
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// Whether this thread's allocations also count in `TRACKED_BYTES`.
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

/// Live bytes of the threads that set `TRACKED` (readable after they exited).
static TRACKED_BYTES: AtomicIsize = AtomicIsize::new(0);

fn live_add(n: isize) {
    LIVE_BYTES.with(|c| c.set(c.get() + n));
    if TRACKED.with(Cell::get) {
        TRACKED_BYTES.fetch_add(n, Ordering::Relaxed);
    }
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
fn the_slice_cache_is_freed_when_its_thread_exits() {
    // What a tracked thread that does nothing leaves (std frees its own start-up bits at
    // exit, allocated before tracking began): the baseline.
    std::thread::spawn(|| TRACKED.with(|t| t.set(true)))
        .join()
        .unwrap();
    let baseline = TRACKED_BYTES.swap(0, Ordering::Relaxed);
    std::thread::spawn(|| {
        TRACKED.with(|t| t.set(true));
        // Switches back and forth leave freed slices in the thread's cache (never trimmed).
        let mut r = spawn(|back| {
            let mut back = back;
            for _ in 0..20 {
                back = park(back).0;
            }
            (back, 1u32)
        })
        .unwrap();
        for _ in 0..20 {
            r = r.from.unwrap().switch(0u32).unwrap();
        }
        assert_eq!(r.value, 1, "the tealet finished");
        assert!(
            TRACKED_BYTES.load(Ordering::Relaxed) > 0,
            "slices are cached"
        );
    })
    .join()
    .unwrap();
    assert_eq!(
        TRACKED_BYTES.load(Ordering::Relaxed),
        baseline,
        "bytes left behind by an exited thread"
    );
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
