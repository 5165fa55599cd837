//! The continulet algorithm over a toy host (no Python): values and exceptions are integers,
//! the "interpreter state" is the number of the context that runs.  Each test checks what
//! PyPy's `_continuation` does for the same program (values delivered, who runs, what each
//! continulet stores), including a switch that fails for lack of memory, after which nothing
//! may have changed.

use continuation::{Error, Host, Slot, Status, ThreadToken};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

// ---- an allocator that can fail on demand (for the out-of-memory switch) ----

struct MayFail;

thread_local! {
    static FAIL_HERE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to `System`; may return null (a valid answer) while failing is on.
unsafe impl GlobalAlloc for MayFail {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if FAIL_HERE.with(Cell::get) {
            return std::ptr::null_mut();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: MayFail = MayFail;

// ---- the toy host ----

/// A continulet of the toy host: its slot and its body (`body(c, first value) -> result`).
struct Cont {
    id: u32,
    slot: Slot<Toy>,
    body: RefCell<Option<Body>>,
    finished: Cell<bool>,
}

type Body = Box<dyn FnOnce(&Obj, i64) -> i64>;
type Obj = Rc<Cont>;

struct Toy;

thread_local! {
    /// The context that runs (0: the thread's own).
    static RUNNING: Cell<u32> = const { Cell::new(0) };
    static PARKED: Cell<Option<u32>> = const { Cell::new(None) };
    static LIVE_CONTEXTS: Cell<i32> = const { Cell::new(0) };
}

impl Host for Toy {
    type State = u32;
    type Payload = i64;
    type Obj = Obj;

    fn slot(obj: &Obj, _thread: ThreadToken) -> &Slot<Toy> {
        &obj.slot
    }
    fn save() -> u32 {
        RUNNING.with(Cell::get)
    }
    fn save_parked() {
        let old = PARKED.with(|p| p.replace(Some(Self::save())));
        assert!(old.is_none(), "a parked state was never taken");
    }
    fn take_parked() -> u32 {
        PARKED.with(Cell::take).expect("a state was parked")
    }
    fn restore(state: u32) {
        RUNNING.with(|r| r.set(state));
    }
    fn enter_new(obj: &Obj) {
        LIVE_CONTEXTS.with(|n| n.set(n.get() + 1));
        RUNNING.with(|r| r.set(obj.id));
    }
    fn leave_finished() {
        LIVE_CONTEXTS.with(|n| n.set(n.get() - 1));
    }
    fn resumed() {}
    fn on_finished(obj: Obj) {
        obj.finished.set(true);
    }
    fn run(obj: &Obj) -> i64 {
        // PyPy's hidden start frame: first a plain switch back to the creator.
        let first = switch(obj, 0);
        Self::run_started(obj, first)
    }
    fn run_started(obj: &Obj, first: i64) -> i64 {
        let body = obj.body.borrow_mut().take().expect("body runs once");
        body(obj, first)
    }
}

/// A continulet that is not started (for `start_switch`).
fn unstarted(id: u32, body: impl FnOnce(&Obj, i64) -> i64 + 'static) -> Obj {
    Rc::new(Cont {
        id,
        slot: Slot::new(),
        body: RefCell::new(Some(Box::new(body))),
        finished: Cell::new(false),
    })
}

fn new(id: u32, body: impl FnOnce(&Obj, i64) -> i64 + 'static) -> Obj {
    let c = Rc::new(Cont {
        id,
        slot: Slot::new(),
        body: RefCell::new(Some(Box::new(body))),
        finished: Cell::new(false),
    });
    assert!(continuation::start::<Toy>(&c).unwrap().is_none());
    assert_eq!(running(), 0, "the creator runs again after start");
    c
}

fn switch(c: &Obj, v: i64) -> i64 {
    continuation::switch::<Toy>(ThreadToken::current(), c, c, v)
        .unwrap_or_else(|_| panic!("switch failed"))
}

fn switch_to(c: &Obj, to: &Obj, v: i64) -> i64 {
    continuation::switch::<Toy>(ThreadToken::current(), c, to, v)
        .unwrap_or_else(|_| panic!("switch failed"))
}

fn running() -> u32 {
    RUNNING.with(Cell::get)
}

/// The context stored in `c` (`None`: nothing suspended is stored).
fn stored(c: &Obj) -> Option<u32> {
    c.slot.with_frame(|f| f.map(|f| *f.state()))
}

#[test]
fn switch_delivers_values_both_ways_and_finishing_returns_the_result() {
    let c = new(1, |c, first| {
        assert_eq!(running(), 1);
        let second = switch(c, first + 1);
        assert_eq!(running(), 1);
        second * 10
    });
    assert_eq!(
        stored(&c),
        Some(1),
        "a started continulet stores its own context"
    );
    assert_eq!(switch(&c, 5), 6);
    assert_eq!(running(), 0);
    assert_eq!(stored(&c), Some(1));
    assert_eq!(switch(&c, 7), 70);
    assert!(c.finished.get());
    assert_eq!(c.slot.status(), Status::Finished);
    assert_eq!(LIVE_CONTEXTS.with(Cell::get), 0);
    assert!(matches!(
        continuation::switch::<Toy>(ThreadToken::current(), &c, &c, 1),
        Err(Error::AlreadyFinished)
    ));
}

#[test]
fn while_a_continulet_runs_it_stores_whoever_switched_into_it() {
    let c = new(1, |c, _| {
        assert_eq!(
            stored(c),
            Some(0),
            "the main context is stored in the running continulet"
        );
        switch(c, 0)
    });
    switch(&c, 0);
    assert_eq!(stored(&c), Some(1));
    switch(&c, 0);
}

#[test]
fn double_switch_resumes_the_target_and_stores_the_origins_continuation_in_it() {
    // b.switch(to=a) from main: a's continuation resumes; b keeps main, a gets b's old one.
    let a = new(1, |a, v| {
        assert_eq!(running(), 1);
        // Here a stores b's old continuation (b's body); switching to a resumes b's body.
        assert_eq!(stored(a), Some(2));
        switch(a, v + 100)
    });
    let b = new(2, |b, v| {
        assert_eq!(running(), 2);
        switch(b, v + 1000)
    });
    assert_eq!(stored(&a), Some(1));
    assert_eq!(stored(&b), Some(2));
    assert_eq!(
        switch_to(&b, &a, 1),
        1101,
        "a (+100), then b (+1000), back to main"
    );
    assert_eq!(running(), 0);
    // a's body switched through a (to b's body, which a stored), b's body through b (to
    // main, which b stored): each now stores its own body again.
    assert_eq!((stored(&a), stored(&b)), (Some(1), Some(2)));
    assert_eq!(switch(&a, 5), 5, "a's body finishes, delivering to main");
    assert!(a.finished.get() && !b.finished.get());
    assert_eq!(switch(&b, 6), 6, "b's body finishes");
    assert!(b.finished.get());
    assert_eq!(LIVE_CONTEXTS.with(Cell::get), 0);
}

#[test]
fn permute_rotates_the_stored_continuations() {
    let a = new(1, switch);
    let b = new(2, switch);
    continuation::permute::<Toy>(ThreadToken::current(), &[a.clone(), b.clone()]).unwrap();
    assert_eq!(stored(&a), Some(2));
    assert_eq!(stored(&b), Some(1));
    continuation::permute::<Toy>(ThreadToken::current(), &[a.clone(), b.clone()]).unwrap();
    assert_eq!((stored(&a), stored(&b)), (Some(1), Some(2)));
    switch(&a, 0);
    switch(&a, 0);
    assert!(a.finished.get());
    assert!(matches!(
        continuation::permute::<Toy>(ThreadToken::current(), &[a.clone(), b.clone()]),
        Err(Error::PermuteFinished)
    ));
    switch(&b, 0);
    switch(&b, 0);
}

#[test]
fn a_switch_without_memory_changes_nothing() {
    let a = new(1, |a, v| switch(a, v + 1));
    let b = new(2, |b, v| switch(b, v + 2));
    for to in [&a, &b] {
        tealet::trim_cache();
        FAIL_HERE.with(|f| f.set(true));
        let r = continuation::switch::<Toy>(ThreadToken::current(), &a, to, 40);
        FAIL_HERE.with(|f| f.set(false));
        assert!(matches!(r, Err(Error::NoMemory)));
        assert_eq!(running(), 0);
        assert_eq!(
            (stored(&a), stored(&b)),
            (Some(1), Some(2)),
            "nothing moved"
        );
        assert!(
            PARKED.with(Cell::get).is_none(),
            "the parked state was taken back"
        );
    }
    // Both still work.
    assert_eq!(switch(&a, 1), 2);
    assert_eq!(switch(&b, 1), 3);
    assert_eq!(switch(&a, 9), 9);
    assert_eq!(switch(&b, 9), 9);
    assert!(a.finished.get() && b.finished.get());
}

#[test]
fn start_switch_runs_the_body_at_once_and_leaves_what_a_switch_would() {
    let thread = ThreadToken::current();
    // Plain: origin is the new continulet itself.
    let c = unstarted(1, |c, first| {
        assert_eq!(running(), 1);
        assert_eq!(
            stored(c),
            Some(0),
            "it stores its starter, as after a first switch"
        );
        switch(c, first + 1) * 10
    });
    assert_eq!(
        continuation::start_switch::<Toy>(thread, &c, &c, 5).unwrap_or(-1),
        6
    );
    assert_eq!(running(), 0);
    assert_eq!(
        stored(&c),
        Some(1),
        "suspended in its body, as any started continulet"
    );
    assert_eq!(switch(&c, 7), 70);
    assert!(c.finished.get());
    assert!(matches!(
        continuation::start_switch::<Toy>(thread, &c, &c, 1),
        Err(Error::AlreadyInitialized)
    ));
    // Double: `a.switch(to=b)` with b never started; b gets what a stored.
    let a = new(2, |a, v| switch(a, v + 100));
    let b = unstarted(3, |b, v| {
        assert_eq!(
            stored(b),
            Some(2),
            "b stores a's old continuation (a's body)"
        );
        switch(b, v + 1000)
    });
    // b's switch(b) resumes a's body (+100), which switches through a back to main.
    assert_eq!(
        continuation::start_switch::<Toy>(thread, &a, &b, 1).unwrap_or(-1),
        1101
    );
    assert_eq!((stored(&a), stored(&b)), (Some(2), Some(3)));
    assert_eq!(switch(&a, 8), 8);
    assert_eq!(switch(&b, 9), 9);
    assert!(a.finished.get() && b.finished.get());
    assert_eq!(LIVE_CONTEXTS.with(Cell::get), 0);
}

#[test]
fn a_finished_slot_reset_starts_again_as_a_new_one() {
    let thread = ThreadToken::current();
    let c = unstarted(1, |c, first| switch(c, first + 1) * 10);
    assert!(!c.slot.reset_finished(), "an unstarted slot is not reset");
    assert_eq!(
        continuation::start_switch::<Toy>(thread, &c, &c, 5).unwrap_or(-1),
        6
    );
    assert!(
        !c.slot.reset_finished(),
        "a suspended context is never dropped by a reset"
    );
    assert_eq!(stored(&c), Some(1));
    assert_eq!(switch(&c, 7), 70);
    assert_eq!(c.slot.status(), Status::Finished);

    assert!(c.slot.reset_finished());
    assert_eq!(c.slot.status(), Status::Uninit);
    c.finished.set(false);
    *c.body.borrow_mut() = Some(Box::new(|c, first| switch(c, first * 2) + 1));
    assert_eq!(
        continuation::start_switch::<Toy>(thread, &c, &c, 4).unwrap_or(-1),
        8,
        "the second body runs as a first start"
    );
    assert_eq!(switch(&c, 20), 21);
    assert!(c.finished.get());
    assert_eq!(c.slot.status(), Status::Finished);
    assert_eq!(LIVE_CONTEXTS.with(Cell::get), 0);
}
