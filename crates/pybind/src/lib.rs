//! # The CPython binding: `_continuation` (continulets) for CPython
//!
//! A pyo3 extension module, `continulet._native`, re-exported as `_continuation` by
//! `pylib/_continuation/__init__.py`.  It is the only crate that knows CPython; interpreter
//! thread state is touched only in [`pystate`].  The continulet algorithm itself is in the
//! `continuation` crate; this file maps it to Python objects, checks arguments in PyPy's order
//! with PyPy's messages, and turns values and exceptions into payloads.
//!
//! # State
//!
//! A `continulet` object holds, once `__init__`ialized, a [`Core`] bound to its thread
//! (`tealet::ThreadBound`): the continuation slot and a weak view of its own context's
//! resources.  `status` mirrors the slot (uninit / pending / finished) in an atomic so that
//! checks that PyPy makes before its thread check work from any thread.
//!
//! # Invariants
//!
//! * **B1** Every path into `continuation` first checks that the objects involved belong to
//!   the current thread (`ThreadBound::get`), so `Bind::slot` never fails.
//! * **B2** No switch happens while a Rust borrow or pyo3 guard of the switching frame must
//!   be released in LIFO order by another context (rule 10 of the style guide): the switch
//!   is called with only owned values and `Bound` references kept alive by Python objects.
//! * **B3** A garbage continulet (one whose stored context the collector was shown, pystate
//!   `refs`) is unwound only from `gc.callbacks`, at the start or end of a collection —
//!   never inside its finalizer, while the collector's lists live in C frames on the stack —
//!   and while it unwinds no switch or permute of its thread succeeds (the chain of finishing
//!   bodies must end back in the callback).
//! * **B4** Once CPython clears the thread state of a thread that made continulets (the
//!   thread exits), the suspended contexts of that thread are taken out of their continulets
//!   and cleared without running any code (pystate P7, [`ThreadExitWatch`]): their frames
//!   give up what they hold, their stacks are freed.  The continulets keep their status
//!   (another thread still gets "cannot switch to a different thread", as on PyPy).
//! * **B5** A continulet is reused (a dead greenlet's or a finished tasklet's, for the next
//!   native start: [`release_continulet`], [`new_prepared`]) only when nothing but its releaser
//!   references it — checked when it is kept and again when it is taken — and it is finished,
//!   of the base class and of this thread, whose state is not being cleared.  It is kept
//!   made fresh (its slot uninitialized, nothing to run, no flags), only its status still
//!   finished, and is released when the thread's state is cleared (B4's watch); never without
//!   the GIL (at the thread's very end it is leaked instead).

#![deny(unsafe_code)]

mod args;
mod fields;
mod greenlet;
#[allow(unsafe_code)] // the one module allowed to touch interpreter internals (style rule 2)
mod pystate;
mod scheduler;

use continuation::{Host, Slot};
use pyo3::exceptions::{PyMemoryError, PyNotImplementedError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use tealet::{ThreadBound, ThreadToken};

#[allow(non_camel_case_types)] // PyPy spells it `error`
mod exc {
    pyo3::create_exception!(
        _continuation,
        error,
        pyo3::exceptions::PyException,
        "Usage error of the _continuation module."
    );
}
use exc::error;

const ST_UNINIT: u8 = 0;
const ST_PENDING: u8 = 1;
const ST_FINISHED: u8 = 2;

/// The thread-bound part of a continulet.
struct Core {
    slot: Slot<Bind>,
    own_ctx: RefCell<pystate::OwnedRef>,
}

/// What a continulet runs once started.
enum Call {
    /// `callable(c, *args, **kwds)`, under PyPy's hidden `start` frame.
    Python(Py<PyAny>, Py<PyTuple>, Option<Py<PyDict>>),
    /// A body of this extension (the native scheduler's tasklets), run without any Python
    /// frame of ours: `body(c, arg)`.
    Native(NativeBody, Py<PyAny>),
}

/// A continulet body written in Rust (see [`Call::Native`]).
pub(crate) type NativeBody = fn(&Bound<'_, Continulet>, &Bound<'_, PyAny>) -> Payload;

/// The hidden bottom frame's function (made once at import).
static START: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

const START_SOURCE: &std::ffi::CStr = c"def make(switch):
    def start(c, func, args, kwds):
        if switch(c) is not None:
            raise TypeError(\"can't send non-None value to a just-started continulet\")
        if kwds is None:
            # explicit arities: CALL runs a Python `func` in this eval loop (no C recursion:
            # less C stack to save per switch), and the collector sees the arguments on this
            # frame's stack; `*args` would go through CALL_FUNCTION_EX (a tuple held by C)
            if not args:
                return func(c)
            n = len(args)
            if n == 1:
                return func(c, args[0])
            if n == 2:
                return func(c, args[0], args[1])
            if n == 3:
                return func(c, args[0], args[1], args[2])
            if n == 4:
                return func(c, args[0], args[1], args[2], args[3])
            return func(c, *args)
        return func(c, *args, **kwds)
    return start
";

// No doc comment: PyPy's `continulet.__doc__` is None.
#[allow(missing_docs)]
#[pyclass(subclass, frozen, name = "continulet", module = "_continuation")]
pub struct Continulet {
    core: OnceLock<ThreadBound<Core>>,
    status: AtomicU8,
    /// The callable and its arguments, until the body starts.
    call: Mutex<Option<Call>>,
    /// Never show the context it stores to the collector (see `unwind_garbage`): a layer
    /// above owns it, its class has a finalizer of its own, or it was finalized already.
    hidden_from_gc: AtomicBool,
    /// A layer above (`stackless`) kills it when garbage: the collector is shown the context
    /// it stores (so that cycles through its frames are found) but [`GarbageUnwinder`] leaves
    /// it to the layer's own finalizer.
    killed_by_layer: AtomicBool,
}

/// A reference to a continulet object, as the `continuation` crate passes them around.
///
/// A `Bound` for the GIL of the context it lives in (every context runs attached, P4), so that
/// cloning and dropping it are a plain reference-count change: a `Py` would look up pyo3's
/// per-thread GIL count on every drop, several times per switch.
#[derive(Clone)]
struct ObjRef(Bound<'static, Continulet>);

impl ObjRef {
    fn new(c: Bound<'_, Continulet>) -> ObjRef {
        ObjRef(c.unbind().into_bound(pystate::attached()))
    }
}

/// What a switch delivers.
enum Payload {
    Value(Py<PyAny>),
    /// Boxed: keeps the payload two words, so less is copied across every switch.
    Exc(Box<PyErr>),
}

/// The `continuation::Host` for CPython.
struct Bind;

impl Host for Bind {
    type State = pystate::PyState;
    type Payload = Payload;
    type Obj = ObjRef;

    fn slot(obj: &ObjRef, thread: ThreadToken) -> &Slot<Bind> {
        &obj.0
            .get()
            .core_on(thread)
            .expect("thread checked before the switch (B1)")
            .slot
    }
    fn save() -> pystate::PyState {
        pystate::save()
    }
    fn save_parked() {
        pystate::save_parked();
    }
    fn take_parked() -> pystate::PyState {
        pystate::take_parked()
    }
    fn restore(state: pystate::PyState) {
        pystate::restore(state);
    }
    fn park_and_restore(state: pystate::PyState, transit: continuation::Transit) {
        pystate::park_and_restore(state, transit);
    }
    #[inline]
    fn resumed_take_parked() -> pystate::PyState {
        pystate::resumed_take_parked()
    }
    fn enter_new(obj: &ObjRef) {
        let me = obj.0.get();
        // Shown to the collector: a Python body, or a native one whose layer records what
        // its Rust frames hold and kills it (a native tasklet's, `killed_by_layer`).
        let shown_body = match *me.call.lock().unwrap() {
            Some(Call::Python(..)) => true,
            Some(Call::Native(..)) => me.killed_by_layer.load(Ordering::Relaxed),
            None => false,
        };
        let unwindable = !me.hidden_from_gc.load(Ordering::Relaxed)
            && shown_body
            && pystate::finalize::is_finalizer::<GarbageUnwinder>(&obj.0.get_type());
        let own = pystate::enter_new(obj.0.as_ptr(), unwindable);
        if let Some(core) = me.thread_core() {
            *core.own_ctx.borrow_mut() = own;
        }
    }
    fn leave_finished() {
        pystate::leave_finished();
    }
    fn resumed() {
        pystate::resumed();
    }
    fn on_finished(obj: ObjRef) {
        obj.0.get().status.store(ST_FINISHED, Ordering::Release);
        release_continulet(obj.0); // B5: a finished tasklet's, for the next tasklet
    }
    // The bodies' frames stay at the bottom of the context's stack while it runs: each step
    // with temporaries is out of line.
    #[inline]
    fn run_started(obj: &ObjRef, payload: Payload) -> Payload {
        let (body, arg) = match started_body(obj, payload) {
            Ok(started) => started,
            Err(p) => return p,
        };
        // (`arg` is owned here while the body runs: pystate `refs`, R3)
        body(&obj.0, arg.bind(obj.0.py()))
    }
    /// Take what the continulet is to run and run it.  Not inlined into the bootstrap frame,
    /// and the call taken in here: the call's parts live in registers and in the start
    /// frame's argument vector, not in a slot of the bootstrap frame too.
    #[inline(never)]
    fn run(obj: &ObjRef) -> Payload {
        let py = pystate::attached();
        match take_call(obj) {
            Some(Call::Python(callable, args, kwargs)) => run_python(obj, callable, args, kwargs),
            Some(Call::Native(body, arg)) => run_native(obj, body, arg.bind(py)),
            None => nothing_to_run(),
        }
    }
}

/// What a continulet's context is to run (taken: it runs once).
#[inline]
fn take_call(obj: &ObjRef) -> Option<Call> {
    obj.0.get().call.lock().unwrap().take()
}

/// The error of a continulet started twice (or never given what to run).  Out of line, as
/// every error of the frames that stay below a context's body.
#[cold]
#[inline(never)]
fn nothing_to_run() -> Payload {
    Payload::Exc(Box::new(error::new_err("continulet has nothing to run")))
}

/// The error of a start before the module finished its import.
#[cold]
#[inline(never)]
fn not_initialized() -> Payload {
    Payload::Exc(Box::new(error::new_err("_continuation not initialized")))
}

/// `Host::run_started`'s first steps: the native body to run and its argument, if the first
/// switch in delivered what a just-started continulet accepts.
#[inline(never)]
fn started_body(obj: &ObjRef, payload: Payload) -> Result<(NativeBody, Py<PyAny>), Payload> {
    let Some(Call::Native(body, arg)) = take_call(obj) else {
        return Err(nothing_to_run());
    };
    match accept_first(&obj.0, deliver(payload)) {
        Ok(()) => Ok((body, arg)),
        Err(e) => Err(Payload::Exc(Box::new(e))),
    }
}

/// `Host::run` for a Python callable (inlined into it).
#[inline]
#[allow(clippy::needless_pass_by_value)] // owned on purpose: the references `call_start` records
fn run_python(
    obj: &ObjRef,
    callable: Py<PyAny>,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
) -> Payload {
    let py = obj.0.py();
    let Some(start) = START.get(py) else {
        return not_initialized();
    };
    let kwargs: Py<PyAny> = kwargs.map_or_else(|| py.None(), Py::into_any);
    // PyPy's hidden bottom frame: `start(c, func, args, kwds)`, so that `_get_frame()`
    // has a frame named `start` and tracebacks look alike.  No argument tuple: what this
    // frame holds while the body runs is known to the collector (pystate `refs`, R3).
    let called = pystate::call_start(
        start.bind(py),
        &[
            obj.0.as_any(),
            callable.bind(py),
            args.bind(py).as_any(),
            kwargs.bind(py),
        ],
    );
    start_payload(py, called)
}

/// What the hidden start frame's call delivers (out of line, see [`pystate::Called`]).
#[inline(never)]
fn start_payload(py: Python<'_>, called: pystate::Called) -> Payload {
    match called.into_result(py) {
        Ok(v) => Payload::Value(v),
        Err(e) => Payload::Exc(Box::new(hide_start_frame(py, e))),
    }
}

/// `Host::run` for a native body: what PyPy's hidden `start` frame does (switch back to the
/// creator at once; the first value sent in must be None), then the body.  Not inlined: its
/// frame stays at the bottom of the context's stack while the body runs.
#[inline(never)]
fn run_native(obj: &ObjRef, body: NativeBody, arg: &Bound<'_, PyAny>) -> Payload {
    if let Err(e) = first_switch_back(&obj.0) {
        return Payload::Exc(e);
    }
    body(&obj.0, arg)
}

/// The hidden `start` frame's `switch(c)`: back to the creator, and the first value sent in
/// must be None.  (Its frame stays below the body: the error is boxed, one word.)
#[inline(never)]
fn first_switch_back(c: &Bound<'_, Continulet>) -> Result<(), Box<PyErr>> {
    let first = Continulet::do_switch(c, Payload::Value(c.py().None()), None);
    accept_first(c, deliver(first)).map_err(Box::new)
}

/// What the first switch into a just-started continulet delivered: an exception is raised at
/// once, a value must be None (PyPy's `start` frame).
fn accept_first(c: &Bound<'_, Continulet>, first: PyResult<Py<PyAny>>) -> PyResult<()> {
    if !first?.is_none(c.py()) {
        return Err(PyTypeError::new_err(
            "can't send non-None value to a just-started continulet",
        ));
    }
    Ok(())
}

/// A new continulet (of the base class) running `body(c, arg)`, started as `__init__` starts
/// one (the context is created and suspended before its first switch in).
pub(crate) fn new_native<'py>(
    arg: &Bound<'py, PyAny>,
    body: NativeBody,
) -> PyResult<Bound<'py, Continulet>> {
    let c = new_prepared(arg.py(), Call::Native(body, arg.clone().unbind()))?;
    // A native tasklet's: shown to the collector (its body records what its Rust frames
    // hold, `pystate::StartRecord`), killed by the tasklet's finalizer.
    c.get().killed_by_layer.store(true, Ordering::Relaxed);
    Continulet::start_prepared(&c)?;
    Ok(c)
}

/// A new continulet (of the base class) that will run `body(c, arg)` when [`start_switch`]
/// first switches into it: initialized (pending, bound to this thread), its context not made
/// yet.
pub(crate) fn new_native_unstarted<'py>(
    arg: &Bound<'py, PyAny>,
    body: NativeBody,
) -> PyResult<Bound<'py, Continulet>> {
    new_prepared(arg.py(), Call::Native(body, arg.clone().unbind()))
}

/// A continulet of the base class prepared to run `call` (`__init__` up to its context's
/// creation): a spare one (B5) when there is one, else a new one.
fn new_prepared(py: Python<'_>, call: Call) -> PyResult<Bound<'_, Continulet>> {
    if let Some(c) = take_spare(py) {
        // B5: fresh but for its core, which is this thread's already.
        let me = c.get();
        *me.call.lock().unwrap() = Some(call);
        me.status.store(ST_PENDING, Ordering::Release);
        return Ok(c);
    }
    let c = Bound::new(py, Continulet::empty())?;
    Continulet::prepare(&c, call)?;
    Ok(c)
}

/// B5: finished continulets of this thread, made fresh, for [`new_prepared`].
struct Spares(RefCell<Vec<Py<Continulet>>>);

impl Drop for Spares {
    /// The thread's end, after its Python state is gone (without the GIL, after the
    /// interpreter's finalization for the main thread): what its exit watch did not release
    /// (spares kept after the watch went off, by code at the interpreter's exit) is leaked,
    /// never released there.
    fn drop(&mut self) {
        std::mem::forget(std::mem::take(self.0.get_mut()));
    }
}

thread_local! {
    static SPARE: Spares = const { Spares(RefCell::new(Vec::new())) };
}

/// At most this many spare continulets per thread (a dead greenlet's continulet is reused by
/// the next greenlet start; more are kept only after bursts of deaths).
const SPARE_MAX: usize = 8;

/// Release `c`, a continulet a layer above is done with (a dead greenlet's, a finished
/// tasklet's): kept in [`SPARE`] if nothing else references it, it is finished, of the base
/// class and of this thread, and the thread is not exiting (B5); else simply released.
pub(crate) fn release_continulet(c: Bound<'_, Continulet>) {
    let py = c.py();
    let me = c.get();
    let reusable = pystate::only_reference(c.as_any())
        && c.get_type_ptr() == <Continulet as pyo3::PyTypeInfo>::type_object_raw(py)
        && me.status() == ST_FINISHED
        && EXIT_WATCHED.with(std::cell::Cell::get);
    if !reusable {
        return;
    }
    let Some(core) = me.thread_core() else { return };
    // Room first: with the spares full (no native start takes them: pure-mode tasklets,
    // plain continulets) a release costs no more than this look.
    if !SPARE.with(|s| s.0.borrow().len() < SPARE_MAX) || !core.slot.reset_finished() {
        return;
    }
    // Made fresh here, not when reused: the finished context's bookkeeping goes now (no
    // Python code runs: what it ran is long taken, its context's resources are gone).
    drop(core.own_ctx.replace(std::rc::Weak::new()));
    drop(me.call.lock().unwrap().take());
    me.hidden_from_gc.store(false, Ordering::Relaxed);
    me.killed_by_layer.store(false, Ordering::Relaxed);
    SPARE.with(|s| s.0.borrow_mut().push(c.unbind()));
}

/// A spare continulet (B5) that still has no other reference, if there is one.
fn take_spare(py: Python<'_>) -> Option<Bound<'_, Continulet>> {
    loop {
        let c = SPARE
            .try_with(|s| s.0.borrow_mut().pop())
            .ok()??
            .into_bound(py);
        if pystate::only_reference(c.as_any()) {
            return Some(c);
        }
        // (found meanwhile, through `gc.get_objects()`: not reused, only released)
    }
}

/// Release this thread's spare continulets (its state is being cleared).
fn drop_spares() {
    let spares = SPARE
        .try_with(|s| std::mem::take(&mut *s.0.borrow_mut()))
        .unwrap_or_default();
    drop(spares);
}

/// `cc.switch(value, to=tc)` for a `tc` from [`new_native_unstarted`], planned by
/// `check_switch_to` (`tc` is pending, so it is a real `to`), creating `tc`'s context now
/// (`continuation::start_switch`); told to the collector as [`switch_and_deliver_hinted`].
pub(crate) fn start_and_deliver_hinted(
    plan: &SwitchPlan,
    value: Py<PyAny>,
    end: pystate::fastcall::ArgsEnd,
    extra: *mut pyo3::ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    hint_plan(plan, end, extra);
    let payload = Payload::Value(value);
    match continuation::start_switch::<Bind>(plan.thread, &plan.origin, &plan.destination, payload)
    {
        Ok(p) => deliver(p),
        Err(e) => Err(*switch_error(e)),
    }
}

/// PyPy's `start` frame is hidden from tracebacks; drop its entry from an escaping exception.
fn hide_start_frame(py: Python<'_>, e: PyErr) -> PyErr {
    let Some(tb) = e.traceback(py) else { return e };
    let is_start = tb
        .getattr("tb_frame")
        .and_then(|f| f.getattr("f_code"))
        .and_then(|c| c.getattr("co_filename"))
        .is_ok_and(|n| n.extract::<String>().is_ok_and(|n| n == "<_continuation>"));
    if is_start {
        let next = tb.getattr("tb_next").ok().filter(|n| !n.is_none());
        let value = e.value(py).clone();
        if value.setattr("__traceback__", next).is_ok() {
            return PyErr::from_value(value.into_any());
        }
    }
    e
}

fn type_error_expected(obj: &Bound<'_, PyAny>) -> PyErr {
    let name = obj
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "'_continuation.continulet' object expected, got '{name}' instead"
    ))
}

/// What a payload means to the Python caller: a return value or a raised exception.
fn deliver(p: Payload) -> PyResult<Py<PyAny>> {
    match p {
        Payload::Value(v) => Ok(v),
        Payload::Exc(e) => Err(*e),
    }
}

impl Payload {
    /// An error (a failed cast, mostly) as a payload, boxed out of line (see
    /// [`Payload::of`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn from_err(e: impl Into<PyErr>) -> Payload {
        Payload::Exc(Box::new(e.into()))
    }

    /// A Python result as a payload (two words, returned in registers: the functions on the
    /// path of a switch return payloads, not results, which are nine words that each caller
    /// would keep room for in a frame saved with the suspended context).
    pub(crate) fn of(r: PyResult<Py<PyAny>>) -> Payload {
        match r {
            Ok(v) => Payload::Value(v),
            Err(e) => Payload::Exc(Box::new(e)),
        }
    }
}

impl fields::ReleaseNow for Payload {
    fn release_now(self, py: Python<'_>) {
        match self {
            Payload::Value(v) => drop(v.into_bound(py)),
            Payload::Exc(e) => drop(e),
        }
    }
}

/// A switch's checks passed (`Some`: who switches where; `None`: a no-op) or failed, with the
/// error boxed (see [`Payload::of`]).
pub(crate) type Checked = Result<Option<SwitchPlan>, Box<PyErr>>;

impl Continulet {
    /// `__init__` with what to run: bind to this thread, create the context and run it up to
    /// its first switch back.
    fn start_with(slf: &Bound<'_, Self>, call: Call) -> PyResult<()> {
        Self::prepare(slf, call)?;
        Self::start_prepared(slf)
    }

    /// [`Continulet::start_with`] after [`Continulet::prepare`]: the context made and run up
    /// to its first switch back.
    fn start_prepared(slf: &Bound<'_, Self>) -> PyResult<()> {
        match continuation::start::<Bind>(&ObjRef::new(slf.clone())) {
            Ok(None | Some(Payload::Value(_))) => Ok(()),
            // The hidden start frame could not even run (e.g. at the recursion limit): report
            // its error from `__init__` rather than hand out an already-finished continulet.
            Ok(Some(Payload::Exc(e))) => Err(*e),
            Err(continuation::Error::NoMemory) => Err(PyMemoryError::new_err(
                "out of memory while starting a continulet",
            )),
            Err(e) => Err(error::new_err(e.to_string())),
        }
    }

    /// `__init__` up to the context's creation: what to run, bound to this thread, pending.
    fn prepare(slf: &Bound<'_, Self>, call: Call) -> PyResult<()> {
        let me = slf.get();
        if me.status() != ST_UNINIT || me.core.get().is_some() {
            return Err(error::new_err("continulet already __init__ialized"));
        }
        *me.call.lock().unwrap() = Some(call);
        let core = Core {
            slot: Slot::new(),
            own_ctx: RefCell::new(std::rc::Weak::new()),
        };
        if me.core.set(ThreadBound::new(core)).is_err() {
            return Err(error::new_err("continulet already __init__ialized"));
        }
        me.status.store(ST_PENDING, Ordering::Release);
        if !EXIT_WATCHED.with(std::cell::Cell::get) {
            watch_thread_exit(slf.py())?;
        }
        Ok(())
    }

    fn empty() -> Continulet {
        Continulet {
            core: OnceLock::new(),
            status: AtomicU8::new(ST_UNINIT),
            call: Mutex::new(None),
            hidden_from_gc: AtomicBool::new(false),
            killed_by_layer: AtomicBool::new(false),
        }
    }

    fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    fn thread_core(&self) -> Option<&Core> {
        self.core.get().and_then(ThreadBound::get)
    }

    /// Its core from any thread, for the read-only queries (`_get_frame`, the suspended
    /// frame, the saved stack), which PyPy answers for a continulet of another thread too.
    fn core_to_read<'py>(&'py self, py: Python<'py>) -> Option<&'py Core> {
        let bound = self.core.get()?;
        Some(match bound.get() {
            Some(core) => core,
            None => pystate::read_under_gil(bound, py),
        })
    }

    /// PyPy's `switch` checks, in PyPy's order, then the switch.
    #[inline]
    fn do_switch(
        slf: &Bound<'_, Self>,
        payload: Payload,
        to: Option<&Bound<'_, PyAny>>,
    ) -> Payload {
        // The switch without a hint (`do_switch_called` adds one when it knows where the
        // arguments end): no hinting frame on the stack of a context suspended here (the
        // scheduler's switches), so fewer bytes per switch.
        match Self::check_switch(slf, to) {
            Ok(Some(ref plan)) => switch_payload(plan, payload),
            Ok(None) => payload,
            Err(e) => Payload::Exc(e),
        }
    }

    /// [`Continulet::do_switch`] for a call from Python whose arguments end at `end` (null:
    /// unknown), which the collector may use (pystate `refs`, R2).
    fn do_switch_called(
        slf: &Bound<'_, Self>,
        payload: Payload,
        to: Option<&Bound<'_, PyAny>>,
        end: pystate::fastcall::ArgsEnd,
    ) -> Payload {
        if end.is_null() {
            return Self::do_switch(slf, payload, to);
        }
        match Self::check_switch(slf, to) {
            // The plan's two references stay on this stack while it is suspended: the
            // collector is told, with where the arguments end (pystate `refs`, R2-R3).
            // (Matched in place: a copy of the plan would take room in this frame.)
            Ok(Some(ref plan)) => switch_payload_hinted(plan, payload, end, std::ptr::null_mut()),
            Ok(None) => payload,
            Err(e) => Payload::Exc(e),
        }
    }

    /// [`Continulet::do_switch`] for a native step (the scheduler's) called from Python with
    /// its arguments ending at `end` (null: unknown): `slf.switch(to=to)`, the switch plan
    /// taking over the caller's references to both (no other reference to them stays on this
    /// stack), the caller's Rust frames holding one reference to `held` across the switch —
    /// all told to the collector (pystate `refs`, R2-R3).
    #[inline]
    pub(crate) fn do_switch_hinted(
        slf: Bound<'_, Self>,
        to: Bound<'_, Self>,
        end: pystate::fastcall::ArgsEnd,
        held: *mut pyo3::ffi::PyObject,
    ) -> Payload {
        let payload = Payload::Value(slf.py().None());
        let checked = Self::check_switch_to(&slf, Some(to));
        drop(slf); // the plan's origin holds it
        match checked {
            Ok(Some(ref plan)) => switch_payload_hinted(plan, payload, end, held),
            Ok(None) => payload,
            Err(e) => Payload::Exc(e),
        }
    }

    /// The checks of PyPy's `switch`: `Ok(None)` for the no-op cases, else who switches where.
    /// Not inlined: its temporaries stay out of the frame that is suspended during the switch.
    #[inline(never)]
    fn check_switch(slf: &Bound<'_, Self>, to: Option<&Bound<'_, PyAny>>) -> Checked {
        // 1. `to` must be a continulet; an uninitialized one counts as None.
        let to: Option<Bound<'_, Continulet>> = match to {
            None => None,
            Some(t) if t.is_none() => None,
            Some(t) => match t.cast::<Continulet>() {
                Ok(t) => Some(t.clone()),
                Err(_) => return Err(Box::new(type_error_expected(t))),
            },
        };
        Self::check_switch_to(slf, to)
    }

    /// `check_switch` from step 1 on, for a `to` already known to be a continulet (greenlet's
    /// fast path calls it directly).
    #[inline(never)]
    fn check_switch_to<'py>(slf: &Bound<'py, Self>, to: Option<Bound<'py, Continulet>>) -> Checked {
        Self::check_switch_steps(slf, to).map_err(Box::new)
    }

    /// The steps of [`Continulet::check_switch_to`].
    #[inline]
    fn check_switch_steps<'py>(
        slf: &Bound<'py, Self>,
        mut to: Option<Bound<'py, Continulet>>,
    ) -> PyResult<Option<SwitchPlan>> {
        refuse_while_unwinding()?;
        if to.as_ref().is_some_and(|t| t.get().status() == ST_UNINIT) {
            to = None;
        }
        // 2. Uninitialized self: use `to`, or do nothing.
        let mut this = slf.clone();
        if this.get().status() == ST_UNINIT {
            match to.take() {
                Some(t) => this = t,
                None => return Ok(None),
            }
        }
        // 3. Finished self (before the thread check).
        if this.get().status() == ST_FINISHED {
            return Err(error::new_err("continulet already finished"));
        }
        let owner = this.get().core.get().map(ThreadBound::owner);
        // 4. Checks on `to`.
        if let Some(t) = &to {
            if t.get().core.get().map(ThreadBound::owner) != owner {
                return Err(error::new_err("cross-thread double switch"));
            }
            if t.is(&this) {
                return Ok(None);
            }
            if t.get().status() == ST_FINISHED {
                return Err(error::new_err("continulet already finished"));
            }
        }
        // 5. Thread check (`to` has the same owner, step 4).
        let thread = ThreadToken::current();
        if this.get().core_on(thread).is_none() {
            return Err(error::new_err("cannot switch to a different thread"));
        }
        let origin = ObjRef::new(this);
        let destination = match to {
            Some(t) => ObjRef::new(t),
            None => origin.clone(),
        };
        Ok(Some(SwitchPlan {
            thread,
            origin,
            destination,
        }))
    }

    /// The thread-bound part, if `thread` (the running one) owns it.
    fn core_on(&self, thread: ThreadToken) -> Option<&Core> {
        self.core.get().and_then(|c| c.get_on(thread))
    }
}

/// A switch that passed PyPy's checks: who switches where, on which thread (B1).
pub(crate) struct SwitchPlan {
    thread: ThreadToken,
    origin: ObjRef,
    destination: ObjRef,
}

/// Tell the next `save()` of this thread what the caller of a switch by `plan` leaves on its
/// stack (pystate `refs`, R2/R3): the plan's two continulets, `extra` (one reference the
/// caller's Rust frames own across the switch, or null) and where the arguments of the
/// Python call that led here end (null: unknown).
#[inline]
fn hint_plan(plan: &SwitchPlan, end: pystate::fastcall::ArgsEnd, extra: *mut pyo3::ffi::PyObject) {
    pystate::hint_switch(
        pystate::Hint::new(end, plan.origin.0.as_ptr(), plan.destination.0.as_ptr())
            .with_extra(extra),
    );
}

/// [`switch_payload`] told to the collector ([`hint_plan`]).  Always inlined: a frame of its
/// own would stay on every stack suspended through it.
#[inline(always)]
#[allow(clippy::inline_always)]
pub(crate) fn switch_payload_hinted(
    plan: &SwitchPlan,
    payload: Payload,
    end: pystate::fastcall::ArgsEnd,
    extra: *mut pyo3::ffi::PyObject,
) -> Payload {
    hint_plan(plan, end, extra);
    switch_payload(plan, payload)
}

/// The switch, and what it delivers back.  After a hint: a switch that happened consumed it
/// (the origin's `save`, or none for a failed stack switch: `save_unswitched`); one that did
/// not leaves it to [`switch_error`] to forget.
#[inline]
fn switch_payload(plan: &SwitchPlan, payload: Payload) -> Payload {
    match continuation::switch::<Bind>(plan.thread, &plan.origin, &plan.destination, payload) {
        Ok(p) => p,
        Err(e) => Payload::Exc(switch_error(e)),
    }
}

/// The error of a switch that did not happen; the hint its caller gave, if any, is forgotten
/// (a switch that happens consumes it).
#[cold]
///
/// Boxed, and out of line: the error's nine words stay out of the frames of a switch.
#[inline(never)]
#[allow(clippy::unnecessary_box_returns)] // boxed on purpose (see above)
fn switch_error(e: continuation::Error) -> Box<PyErr> {
    pystate::clear_hint();
    Box::new(match e {
        continuation::Error::NoMemory => {
            PyMemoryError::new_err("out of memory while switching continulets")
        }
        e => error::new_err(e.to_string()),
    })
}

/// Build the exception `throw(type, value, tb)` raises, in the caller, before switching.
fn make_exception(
    py: Python<'_>,
    typ: &Bound<'_, PyAny>,
    value: Option<&Bound<'_, PyAny>>,
    tb: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let tb = tb.filter(|t| !t.is_none());
    if let Some(t) = tb {
        if !t.is_instance_of::<pyo3::types::PyTraceback>() {
            return Err(PyTypeError::new_err(
                "throw() third argument must be a traceback object",
            ));
        }
    }
    let value = value.filter(|v| !v.is_none());
    let exc: Bound<'_, PyAny> = if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        if value.is_some() {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        typ.clone()
    } else if let Ok(cls) = typ.cast::<PyType>() {
        if !cls.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
            return Err(PyTypeError::new_err(format!(
                "exceptions must derive from BaseException, not {}",
                cls.name()?
            )));
        }
        match value {
            Some(v) if v.is_instance(cls)? => v.clone(),
            Some(v) => match v.cast::<PyTuple>() {
                Ok(t) => cls.call1(t.clone())?,
                Err(_) => cls.call1((v,))?,
            },
            None => cls.call0()?,
        }
    } else {
        let name = typ.get_type().name()?;
        return Err(PyTypeError::new_err(format!(
            "exceptions must derive from BaseException, not {name}"
        )));
    };
    if let Some(t) = tb {
        exc.setattr("__traceback__", t)?;
    }
    Ok(PyErr::from_value(exc).clone_ref(py))
}

#[pymethods]
impl Continulet {
    #[new]
    #[pyo3(signature = (*_args, **_kwds))]
    fn new(_args: &Bound<'_, PyTuple>, _kwds: Option<&Bound<'_, PyDict>>) -> Self {
        Continulet::empty()
    }

    /// `__init__(callable, *args, **kwds)` (arguments bound as PyPy binds them: `args`).
    #[pyo3(signature = (*args, **kwds))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwds: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let (callable, args, kwds) = args::bind_init(args, kwds)?;
        let call = Call::Python(callable.unbind(), args.unbind(), kwds.map(Bound::unbind));
        Self::start_with(slf, call)
    }

    /// `throw(type, val=None, tb=None, to=None)`: the keyword names are PyPy's (`val`, not
    /// `value`).
    #[pyo3(signature = (*args, **kwargs))]
    fn throw(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let [typ, val, tb, to] = THROW.bind(args, kwargs)?;
        let typ = typ.expect("required: bound or refused");
        let exc = make_exception(slf.py(), &typ, val.as_ref(), tb.as_ref())?;
        deliver(Self::do_switch(
            slf,
            Payload::Exc(Box::new(exc)),
            to.as_ref(),
        ))
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn is_pending(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        if !args.is_empty() || kwargs.is_some_and(|k| !k.is_empty()) {
            NO_ARGS_IS_PENDING.bind::<0>(args, kwargs)?;
        }
        Ok(self.status() == ST_PENDING)
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn _get_frame(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        if !args.is_empty() || kwargs.is_some_and(|k| !k.is_empty()) {
            NO_ARGS_GET_FRAME.bind::<0>(args, kwargs)?;
        }
        Ok(self.frame_of_bottom(py))
    }

    #[allow(clippy::unused_self)] // a method, as in PyPy
    fn __reduce__(&self) -> PyResult<()> {
        Err(PyNotImplementedError::new_err(
            "continulet's pickle support is currently disabled",
        ))
    }

    #[pyo3(signature = (*_args))]
    #[allow(clippy::unused_self)] // a method, as in PyPy
    fn __setstate__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        Err(PyNotImplementedError::new_err(
            "continulet's pickle support is currently disabled",
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(call) = self.call.try_lock() {
            match call.as_ref() {
                Some(Call::Python(c, a, k)) => {
                    visit.call(c)?;
                    visit.call(a)?;
                    if let Some(k) = k {
                        visit.call(k)?;
                    }
                }
                Some(Call::Native(_, arg)) => visit.call(arg)?,
                None => {}
            }
        }
        // What the stored context holds, if it may be unwound (see `unwind_garbage`).
        if self.status() == ST_PENDING && !self.hidden_from_gc.load(Ordering::Relaxed) {
            if let Some(core) = self.thread_core() {
                core.slot.with_frame(|frame| match frame {
                    Some(f) => pystate::visit_refs(f.state(), &mut |p| visit.call(p)),
                    None => Ok(()),
                })?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Ok(mut call) = self.call.try_lock() {
            call.take();
        }
    }
}

/// `switch(value=None, to=None)`, the raw method of `pystate::fastcall` (whose argument
/// vector's end the collector may use), for the common call shapes.
pub(crate) fn switch_fast<'py>(
    slf: &Bound<'py, Continulet>,
    value: Option<&Bound<'py, PyAny>>,
    to: Option<&Bound<'py, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    let value = value.map_or_else(|| slf.py().None(), |v| v.clone().unbind());
    Continulet::do_switch_called(slf, Payload::Value(value), to, end)
}

/// `switch(*args, **kwargs)` for every other call shape: PyPy's argument errors.
pub(crate) fn switch_slow<'py>(
    slf: &Bound<'py, Continulet>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    match SWITCH.bind(args, kwargs) {
        Ok([value, to]) => switch_fast(slf, value.as_ref(), to.as_ref(), end),
        Err(e) => Payload::Exc(Box::new(e)),
    }
}

const SWITCH: args::Signature = args::Signature {
    name: "switch",
    params: &["value", "to"],
    required: 0,
};
const THROW: args::Signature = args::Signature {
    name: "throw",
    params: &["type", "val", "tb", "to"],
    required: 1,
};
const NO_ARGS_IS_PENDING: args::Signature = args::Signature {
    name: "is_pending",
    params: &[],
    required: 0,
};
const NO_ARGS_GET_FRAME: args::Signature = args::Signature {
    name: "_get_frame",
    params: &[],
    required: 0,
};

impl Continulet {
    /// `_get_frame()`: False uninitialized, None finished, else the context's bottom frame.
    fn frame_of_bottom(&self, py: Python<'_>) -> Py<PyAny> {
        match self.status() {
            ST_UNINIT => false
                .into_pyobject(py)
                .unwrap()
                .to_owned()
                .into_any()
                .unbind(),
            ST_FINISHED => py.None(),
            _ => {
                let Some(core) = self.core_to_read(py) else {
                    return py.None();
                };
                let f = pystate::bottom_frame(&core.own_ctx.borrow());
                pystate::frame_into_py(py, f)
            }
        }
    }
}

// ---- garbage continulets -------------------------------------------------------------------

/// Continulets being unwound by [`unwind_garbage`], on any thread (a fast "none" check).
static UNWINDING_ANYWHERE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// Continulets being unwound by [`unwind_garbage`] on this thread.
    static UNWINDING_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Switches and permutes fail while this thread unwinds a garbage continulet.
pub(crate) fn refuse_while_unwinding() -> PyResult<()> {
    if UNWINDING_ANYWHERE.load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    refuse_if_unwinding_here()
}

/// The thread-local half of [`refuse_while_unwinding`], out of line so that the common path
/// (nothing unwinding anywhere) does not compute the thread-local's address.
#[cold]
#[inline(never)]
fn refuse_if_unwinding_here() -> PyResult<()> {
    if UNWINDING_HERE.with(std::cell::Cell::get) != 0 {
        return Err(error::new_err(
            "cannot switch while a garbage continulet is being unwound",
        ));
    }
    Ok(())
}

/// While alive, every switch and permute of this thread is refused ([`unwind_garbage`]).
struct UnwindingGuard;

impl UnwindingGuard {
    fn enter() -> UnwindingGuard {
        UNWINDING_ANYWHERE.fetch_add(1, Ordering::Relaxed);
        UNWINDING_HERE.with(|n| n.set(n.get() + 1));
        UnwindingGuard
    }
}

impl Drop for UnwindingGuard {
    fn drop(&mut self) {
        UNWINDING_HERE.with(|n| n.set(n.get() - 1));
        UNWINDING_ANYWHERE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The PEP 442 finalizer of `continulet` (and of subclasses without a `__del__`).
struct GarbageUnwinder;

impl pystate::finalize::Finalize for GarbageUnwinder {
    fn finalize(obj: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(c) = obj.cast::<Continulet>() {
            if !c.get().killed_by_layer.load(Ordering::Relaxed) {
                unwind_garbage(c);
            }
        }
        Ok(())
    }
}

thread_local! {
    /// Garbage continulets this thread's collector handed to [`GarbageUnwinder`], waiting for
    /// the end of the collection ([`unwind_queued`]).
    static UNWIND_QUEUE: UnwindQueue = const { UnwindQueue(RefCell::new(Vec::new())) };
}

/// A thread's [`UNWIND_QUEUE`]: what it still holds when its thread exits (no collection of
/// that thread ran since) no longer counts as waiting.
struct UnwindQueue(RefCell<Vec<Py<Continulet>>>);

impl Drop for UnwindQueue {
    fn drop(&mut self) {
        let left = self.0.get_mut().len();
        UNWIND_PENDING.fetch_sub(u32::try_from(left).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
}

/// Continulets in the [`UNWIND_QUEUE`]s of all threads.
static UNWIND_PENDING: AtomicU32 = AtomicU32::new(0);

/// `gc.callbacks` (the interpreter's list) and our entry for it, [`unwind_queued`]: present in
/// the list only while some continulet waits to be unwound, so that other collections do not
/// pay for a call.
static GC_CALLBACKS: pyo3::sync::PyOnceLock<(Py<pyo3::types::PyList>, Py<PyAny>)> =
    pyo3::sync::PyOnceLock::new();

/// Make sure [`unwind_queued`] is in `gc.callbacks` (at its end when added).
fn register_unwinding(py: Python<'_>) -> PyResult<()> {
    let Some((list, cb)) = GC_CALLBACKS.get(py) else {
        return Ok(());
    };
    let list = list.bind(py);
    if !list.contains(cb)? {
        list.append(cb)?;
    }
    Ok(())
}

/// Take [`unwind_queued`] out of `gc.callbacks` when nothing waits any more and it is the last
/// entry (removing an earlier one while the collector walks the list would skip a callback).
fn unregister_unwinding(py: Python<'_>) -> PyResult<()> {
    let Some((list, cb)) = GC_CALLBACKS.get(py) else {
        return Ok(());
    };
    let list = list.bind(py);
    let Some(end) = list.len().checked_sub(1) else {
        return Ok(());
    };
    if UNWIND_PENDING.load(Ordering::Relaxed) == 0 && list.get_item(end)?.is(cb) {
        list.del_item(end)?;
    }
    Ok(())
}

/// A continulet the collector found to be garbage: if the context it stores was shown to the
/// collector (its frames' references visited by `__traverse__`: a suspended Python-body
/// context of this thread that no layer above owns), keep it (and so its whole cycle) alive
/// until the collection ends, when [`unwind_queued`] throws `GeneratorExit` into it.
///
/// Not at once: the collection's lists of garbage have their heads in C frames of the
/// collector, on the stack where the unwinding would run; a frame freeing one of those
/// objects would write to a list head whose memory another context's stack is using.  At the
/// end of the collection (`gc.callbacks`, "stop") no such list exists any more.
///
/// In every case the continulet is hidden from the collector from now on (its finalizer runs
/// once).
fn unwind_garbage(c: &Bound<'_, Continulet>) {
    let me = c.get();
    if me.status() != ST_PENDING || me.hidden_from_gc.swap(true, Ordering::Relaxed) {
        return;
    }
    let shown = me.thread_core().is_some_and(|core| {
        core.slot
            .with_frame(|f| f.is_some_and(|f| pystate::unwindable(f.state())))
    });
    if shown {
        UNWIND_QUEUE.with(|q| q.0.borrow_mut().push(c.clone().unbind()));
        UNWIND_PENDING.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = register_unwinding(c.py()) {
            e.write_unraisable(c.py(), Some(c.as_any()));
        }
    }
}

/// `gc.callbacks` entry: at the end of a collection (or the start of the next one, for a
/// continulet queued outside a collection), unwind the garbage continulets of this thread
/// that wait ([`unwind_garbage`]).  No list of the collector exists at either point.
#[pyfunction]
fn unwind_queued(py: Python<'_>, _phase: &str, _info: &Bound<'_, PyAny>) {
    loop {
        let queued = UNWIND_QUEUE.with(|q| std::mem::take(&mut *q.0.borrow_mut()));
        if queued.is_empty() {
            break;
        }
        for c in queued {
            UNWIND_PENDING.fetch_sub(1, Ordering::Relaxed);
            let c = c.into_bound(py);
            if let Err(e) = unwind_now(&c) {
                e.write_unraisable(py, Some(c.as_any()));
            }
        }
    }
    if let Err(e) = unregister_unwinding(py) {
        e.write_unraisable(py, None);
    }
}

/// Throw `GeneratorExit` into the garbage continulet `c`, so that the frames of the context it
/// stores unwind and run their `finally` blocks, as a generator's `close()` does; the cycle
/// through them is then gone and reference counting frees what is left.  PyPy frees such a
/// continulet without running its `finally` blocks (a documented difference).
///
/// While the context unwinds, switches and permutes of this thread are refused with
/// `_continuation.error`: a body that switched elsewhere instead of finishing would leave this
/// stack (the collector's callback) stored in a continulet nobody resumes.  Every body resumed
/// meanwhile can only finish, and the chain of finishing bodies ends back here (the garbage
/// continulets of one cycle store each other's contexts).  An exception other than
/// `GeneratorExit` is reported as unraisable; a continulet that could not be switched into at
/// all is kept alive as it is.
fn unwind_now(c: &Bound<'_, Continulet>) -> PyResult<()> {
    if c.get().status() != ST_PENDING {
        return Ok(()); // finished by the unwinding of another member of its cycle
    }
    let Some(plan) = Continulet::check_switch_to(c, None).map_err(|e| *e)? else {
        return Ok(());
    };
    let exit = Payload::Exc(Box::new(pyo3::exceptions::PyGeneratorExit::new_err(())));
    let result = {
        let _unwinding = UnwindingGuard::enter();
        deliver(switch_payload(&plan, exit))
    };
    if c.get().status() == ST_PENDING {
        // Not switched into (no memory): keep it, and all it holds, alive for good.
        std::mem::forget(c.clone());
    }
    match result {
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyGeneratorExit>(c.py()) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

// ---- threads that exit -------------------------------------------------------------------

thread_local! {
    /// Whether this thread state's dict holds a [`ThreadExitWatch`] (B4).
    static EXIT_WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set once this thread's watch went off: the thread state is being cleared (B4).
    static EXITING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Its key in the thread state's dict.
const EXIT_WATCH_KEY: &str = "continulet._native.thread_exit_watch";

/// Lives only in the dict of a thread state that made a continulet: CPython clears that dict,
/// on the thread and with the GIL held, when the thread exits (`PyThreadState_Clear`; also
/// when a `PyGILState_Release` ends a thread state made by `PyGILState_Ensure`).  Its drop
/// clears the thread's suspended contexts, none of which can ever run again (B4).
///
/// CPython also clears other threads' states from one thread — at shutdown, and in the child
/// of a `fork()` — so the watch acts only on the thread that made it (`owner`): the others'
/// contexts are then left as they are (leaked, never resumed).
#[pyclass(module = "_continuation", name = "_thread_exit_watch", frozen)]
struct ThreadExitWatch {
    owner: u64,
}

impl Drop for ThreadExitWatch {
    fn drop(&mut self) {
        if tealet::current_thread_token() != self.owner {
            return;
        }
        EXIT_WATCHED.with(|w| w.set(false));
        EXITING.with(|e| e.set(true));
        drop_spares();
        if pystate::live_contexts() == 0 {
            return;
        }
        let py = pystate::attached(); // (dropped by its dict's deallocation: GIL held)
        if let Err(e) = clear_thread_contexts(py) {
            e.write_unraisable(py, None);
        }
    }
}

/// Put a [`ThreadExitWatch`] in this thread state's dict.
#[cold]
fn watch_thread_exit(py: Python<'_>) -> PyResult<()> {
    let Some(dict) = pystate::thread_dict(py) else {
        return Ok(()); // (no memory for the dict: the thread's contexts leak at exit)
    };
    let watch = ThreadExitWatch {
        owner: tealet::current_thread_token(),
    };
    dict.set_item(EXIT_WATCH_KEY, Bound::new(py, watch)?)?;
    EXIT_WATCHED.with(|w| w.set(true));
    EXITING.with(|e| e.set(false));
    Ok(())
}

/// Whether a switch of this thread would be refused now (a garbage continulet is being
/// unwound, B3): a layer above refuses its operation before it changes anything.
#[pyfunction]
fn switch_refused() -> bool {
    refuse_while_unwinding().is_err()
}

/// Whether this thread's state is being cleared (B4): the layers above run no code for
/// their greenlets and tasklets any more.
#[pyfunction]
fn thread_exiting() -> bool {
    EXITING.with(std::cell::Cell::get)
}

/// Take every suspended context of this thread out of its continulet, then clear each
/// (pystate P7) and free its stack (B4).  Nothing of this thread switches meanwhile.  Not at
/// interpreter shutdown, whose order of destruction no code of ours should race.
fn clear_thread_contexts(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    if sys.call_method0("is_finalizing")?.is_truthy()? {
        return Ok(());
    }
    let _no_switch = UnwindingGuard::enter();
    let thread = ThreadToken::current();
    let mut frames = Vec::new();
    for obj in py.import("gc")?.call_method0("get_objects")?.try_iter()? {
        let obj = obj?;
        let Ok(c) = obj.cast::<Continulet>() else {
            continue;
        };
        let Some(core) = c.get().core.get().and_then(|b| b.get_on(thread)) else {
            continue;
        };
        if let Some(frame) = core.slot.take_frame() {
            c.get().hidden_from_gc.store(true, Ordering::Relaxed);
            frames.push(frame);
        }
    }
    for frame in frames {
        pystate::clear_suspended(frame.state());
    }
    Ok(())
}

/// Mark `c` as owned by a layer above (`greenlet`, `stackless`), which kills its own
/// garbage: the collector is never shown its context, wherever that context is stored.
#[pyfunction]
fn owned_by_layer(c: &Bound<'_, PyAny>) -> PyResult<()> {
    let c = c.cast::<Continulet>().map_err(|_| type_error_expected(c))?;
    c.get().hidden_from_gc.store(true, Ordering::Relaxed);
    if let Some(core) = c.get().thread_core() {
        pystate::keep_from_collector(&core.own_ctx.borrow());
    }
    Ok(())
}

/// Mark `c` as killed by a layer above (`stackless`) when garbage: unlike [`owned_by_layer`],
/// the collector is still shown the context it stores (its frames' references), so that a
/// cycle through them is found; the layer's finalizer (a tasklet's) then kills the body.  A
/// garbage continulet marked so is never unwound with `GeneratorExit`.
#[pyfunction]
fn killed_by_layer(c: &Bound<'_, PyAny>) -> PyResult<()> {
    let c = c.cast::<Continulet>().map_err(|_| type_error_expected(c))?;
    c.get().killed_by_layer.store(true, Ordering::Relaxed);
    Ok(())
}

/// Whether the cyclic collector is collecting (from its start to the end of its
/// `gc.callbacks`): a finalizer that would switch must wait (see `unwind_garbage`).
#[pyfunction]
fn gc_collecting(py: Python<'_>) -> bool {
    pystate::gc_collecting(py)
}

/// Report `exc` as unraisable in `obj` (`PyErr_WriteUnraisable`: `sys.unraisablehook`), for
/// an error of a finalizer's deferred work.
#[pyfunction]
fn write_unraisable(exc: &Bound<'_, pyo3::exceptions::PyBaseException>, obj: &Bound<'_, PyAny>) {
    PyErr::from_value(exc.clone().into_any()).write_unraisable(obj.py(), Some(obj));
}

/// `permute(*continulets)`.
#[pyfunction]
#[pyo3(signature = (*args))]
fn permute(args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let mut conts = Vec::with_capacity(args.len());
    for a in args.iter() {
        conts.push(
            a.cast_into::<Continulet>()
                .map_err(|e| type_error_expected(e.into_inner().as_any()))?,
        );
    }
    permute_conts(&conts)
}

/// `permute(*conts)` for continulets already checked to be continulets (uninitialized ones are
/// skipped, as PyPy does).
pub(crate) fn permute_conts(conts: &[Bound<'_, Continulet>]) -> PyResult<()> {
    refuse_while_unwinding()?;
    let thread = ThreadToken::current();
    let mut objs = Vec::with_capacity(conts.len());
    for c in conts {
        objs.extend(permutable(c, thread)?);
    }
    permute_objs(thread, &objs)
}

/// [`permute_conts`] of two continulets (a dying greenlet's and its parent's), without the
/// list on the heap.
pub(crate) fn permute_two(a: &Bound<'_, Continulet>, b: &Bound<'_, Continulet>) -> PyResult<()> {
    refuse_while_unwinding()?;
    let thread = ThreadToken::current();
    match (permutable(a, thread)?, permutable(b, thread)?) {
        (Some(a), Some(b)) => permute_objs(thread, &[a, b]),
        (Some(one), None) | (None, Some(one)) => permute_objs(thread, &[one]),
        (None, None) => permute_objs(thread, &[]),
    }
}

/// `c` as `permute` takes it: None if uninitialized (skipped), an error if it belongs to
/// another thread or is finished.
fn permutable(c: &Bound<'_, Continulet>, thread: ThreadToken) -> PyResult<Option<ObjRef>> {
    match c.get().status() {
        ST_UNINIT => Ok(None),
        _ if c.get().core_on(thread).is_none() => {
            Err(error::new_err("inter-thread support is missing"))
        }
        ST_FINISHED => Err(error::new_err("got an already-finished continulet")),
        _ => Ok(Some(ObjRef::new(c.clone()))),
    }
}

fn permute_objs(thread: ThreadToken, objs: &[ObjRef]) -> PyResult<()> {
    continuation::permute::<Bind>(thread, objs).map_err(|e| error::new_err(e.to_string()))
}

/// Pickle support.
#[pyfunction]
fn _p(subtype: &Bound<'_, PyType>) -> PyResult<Py<PyAny>> {
    let base = subtype.py().get_type::<Continulet>();
    if !subtype.is_subclass(&base)? {
        let name = subtype.name()?;
        return Err(PyTypeError::new_err(format!(
            "continulet.__new__({name}): {name} is not a subtype of continulet"
        )));
    }
    Ok(base.call_method1("__new__", (subtype,))?.unbind())
}

/// The thread's current `contextvars.Context`, or None (the compat seam for greenlet).
#[pyfunction]
fn get_contextvar_context(py: Python<'_>) -> Py<PyAny> {
    pystate::frame_into_py(py, pystate::get_context())
}

/// Make `ctx` (a `contextvars.Context` or None) the thread's current context.
#[pyfunction]
fn set_contextvar_context(ctx: &Bound<'_, PyAny>) -> PyResult<()> {
    if ctx.is_none() {
        pystate::set_context(std::ptr::null_mut());
        return Ok(());
    }
    let is_ctx = ctx.get_type().name()? == "Context" && ctx.get_type().module()? == "_contextvars";
    if !is_ctx {
        return Err(PyTypeError::new_err(
            "a contextvars.Context or None is required",
        ));
    }
    pystate::set_context(ctx.clone().into_ptr());
    Ok(())
}

/// The frame at which a suspended continulet's stored context resumes, or None (greenlet's
/// `gr_frame` on CPython; PyPy gets it from `_get_frame().f_back`).
#[pyfunction]
fn suspended_frame(py: Python<'_>, c: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let c = c.cast::<Continulet>().map_err(|_| type_error_expected(c))?;
    let Some(core) = c.get().core_to_read(py) else {
        return Ok(py.None());
    };
    let f = core.slot.with_frame(|frame| {
        frame.map_or(std::ptr::null_mut(), |fr| pystate::top_frame(fr.state()))
    });
    Ok(pystate::frame_into_py(py, f))
}

/// Saved C-stack bytes of what a continulet stores (greenlet's `_stack_saved`).
#[pyfunction]
fn stack_saved(c: &Bound<'_, PyAny>) -> PyResult<usize> {
    let c = c.cast::<Continulet>().map_err(|_| type_error_expected(c))?;
    Ok(c.get().core_to_read(c.py()).map_or(0, |core| {
        core.slot
            .with_frame(|f| f.map_or(0, continuation::Frame::saved_bytes))
    }))
}

#[pymodule(gil_used = true)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    pystate::check_runtime_version(m.py())?;
    let py = m.py();
    let code = PyModule::from_code(py, START_SOURCE, c"<_continuation>", c"_continuation_start")?;
    let ty = py.get_type::<Continulet>();
    pystate::fastcall::install_switch(&ty)?;
    pystate::finalize::set_finalizer::<GarbageUnwinder>(&ty);
    let switch = ty.getattr("switch")?;
    let start = code.getattr("make")?.call1((switch,))?.unbind();
    START.get_or_init(py, || start);
    m.add_class::<Continulet>()?;
    // pyo3 gives undocumented classes an empty docstring; PyPy's is None.
    py.get_type::<Continulet>().setattr("__doc__", py.None())?;
    m.add("error", m.py().get_type::<error>())?;
    m.add_function(wrap_pyfunction!(permute, m)?)?;
    m.add_function(wrap_pyfunction!(_p, m)?)?;
    m.add_function(wrap_pyfunction!(get_contextvar_context, m)?)?;
    m.add_function(wrap_pyfunction!(set_contextvar_context, m)?)?;
    m.add_function(wrap_pyfunction!(suspended_frame, m)?)?;
    m.add_function(wrap_pyfunction!(stack_saved, m)?)?;
    m.add_function(wrap_pyfunction!(owned_by_layer, m)?)?;
    m.add_function(wrap_pyfunction!(killed_by_layer, m)?)?;
    m.add_function(wrap_pyfunction!(gc_collecting, m)?)?;
    m.add_function(wrap_pyfunction!(write_unraisable, m)?)?;
    m.add_function(wrap_pyfunction!(thread_exiting, m)?)?;
    m.add_function(wrap_pyfunction!(switch_refused, m)?)?;
    let unwind = wrap_pyfunction!(unwind_queued, m)?;
    let callbacks = py
        .import("gc")?
        .getattr("callbacks")?
        .cast_into::<pyo3::types::PyList>()?;
    let _ = GC_CALLBACKS.set(py, (callbacks.unbind(), unwind.clone().into_any().unbind()));
    m.add("_unwind_queued", unwind)?;
    scheduler::register(m)?;
    greenlet::register(m)?;
    Ok(())
}
