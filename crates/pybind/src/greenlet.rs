//! # The native fast path of `greenlet.switch` on CPython
//!
//! `pylib/greenlet` is greenlet 3.x in Python over `_continuation`, and it stays the whole
//! implementation on PyPy and with `CONTINULET_PURE=1`.  On CPython its two state classes get
//! native bases from here: [`GreenletBase`] holds a greenlet's fields and [`ThreadStateBase`]
//! the per-thread state, under the *same attribute names* the Python code uses
//! (`_greenlet__c`, `current`, ...), so every Python path reads and writes the very same
//! fields.  Only the common case of `switch` runs here: a started greenlet of this thread that
//! is not the current one.  It does what `greenlet._transfer` does — record the origin, swap
//! the contextvars contexts, make the target current, double-switch the continulets
//! (`current._c.switch(value, to=target._c)`) — and, on the way back, what `_transfer` does
//! after its switch (the Python `_after` only when a tracer or a deferred kill needs it).
//! Every other case (unstarted, dead, other thread, self-switch) calls the Python `_deliver`
//! before changing anything, so the two modes cannot drift apart.
//!
//! # Invariants
//!
//! * **G1** (greenlet.py's I3) Nothing on the C stack of a suspended greenlet references that
//!   greenlet: the fast path drops its reference to the current greenlet before the switch and
//!   keeps only the two continulets, so a greenlet that loses its last reference is finalized
//!   (and killed with `GreenletExit`) by refcounting, as in pure mode.
//! * **G2** (the crate's B2) No pyo3 borrow guard is held across the switch: the two bases
//!   are frozen (their fields are pystate `GilCell`s, which lend nothing: L2), and the
//!   continulets' own guards end before `Continulet::do_switch`.
//! * **G3** A `ThreadStateBase` belongs to the thread that created it (`tstate`: that thread's
//!   `PyThreadState` address); the fast path is taken only on that thread.  An address can be
//!   reused once its thread has exited, so the fast path also requires `exited` to be false
//!   (greenlet.py sets it when the thread's locals are destroyed, before its thread state is).
//! * **G4** No Python object is released in the middle of a field's change: a release can
//!   run a finalizer (a greenlet's `__del__` kills it, reading and writing `ts` and
//!   greenlets).  Old values are moved out of their `GilCell`, the store completes, then they
//!   are dropped: in the fast path, and in every attribute setter (`fields::set_cell`,
//!   invariant F1).

//! * **G6** A greenlet started natively reaches its body through `STARTING` (one slot for
//!   the process), set right before its continulet's first switch and taken by the body
//!   before any code can run, the GIL held throughout; so no frame of the new greenlet's stack
//!   references the greenlet (I3), and no other start comes in between.  A value left there
//!   (the start failed before the body ran) is dropped by the starter.

//! * **G7** What a suspended greenlet's Rust frames own is told to the collector (pystate
//!   `refs`, R3), so that its stack leaves nothing behind when it is cleared (its thread
//!   exited: pystate P7): the switch plan's two continulets and the thread state (`transfer`,
//!   `start_native`: the current continulet is the plan's, no second reference), what
//!   [`call_run`] holds while `run` runs; and the raw `switch()`/`switch(value)`
//!   ([`switch_raw`]) says where its caller's arguments end.  greenlet's continulets are never
//!   shown to the collector (greenlet.py kills its own garbage), so a reference told and not
//!   owned could only be released twice by such a clearing: each recording names the frame
//!   that owns it.
//! * **G5** `LAST_TS` caches the `greenlet._tls.ts` looked up last (a `threading.local` read
//!   costs ~500 instructions; one entry for the process, read under the GIL: a thread that
//!   finds another thread's there looks its own up and takes the entry) and is used only while
//!   that state passes G3's test: made for the current `PyThreadState` and not `exited`.  A
//!   thread state deleted and made anew on the same OS thread (`PyGILState_Ensure` from a
//!   foreign thread), or an exited thread's address reused by a new one, gets a fresh `ts`
//!   from greenlet.py, and the stale cached one has `exited` set by then; setting `exited`
//!   also empties the entry, so an exited thread's state is not kept alive by it.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::fields::ReleaseNow;
use crate::pystate::gil_cell::GilCell;
use crate::{pystate, Continulet, Payload};

type Obj = Py<PyAny>;

/// The fields of a greenlet (the base of `greenlet.greenlet` on CPython).  Frozen: its fields
/// are `GilCell`s (pystate `gil_cell`), read and written without pyo3's borrow checks.
#[pyclass(
    subclass,
    dict,
    weakref,
    frozen,
    module = "greenlet",
    name = "_GreenletBase"
)]
#[derive(Default)]
pub(crate) struct GreenletBase {
    /// `_greenlet__c`: its continulet once started (the main greenlet's is uninitialized).
    #[pyo3(get, name = "_greenlet__c")]
    c: GilCell<Option<Py<Continulet>>>,
    /// `_greenlet__ts`: its thread's state while it is alive, None before it starts and once
    /// it is dead.
    #[pyo3(get, name = "_greenlet__ts")]
    ts: GilCell<Option<Py<ThreadStateBase>>>,
    /// `_greenlet__home`: the thread state it started in (kept after death).
    #[pyo3(get, name = "_greenlet__home")]
    home: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_greenlet__parent")]
    parent: GilCell<Option<Obj>>,
    /// `_greenlet__context`: its saved contextvars context while it is not running.
    #[pyo3(get, name = "_greenlet__context")]
    context: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_greenlet__main")]
    main: GilCell<bool>,
    /// `_greenlet__run`: its `run` until it starts (`None`: not set — an `AttributeError` to
    /// Python, as an empty slot).
    run: GilCell<Option<Obj>>,
}

impl Drop for GreenletBase {
    /// Each field released as a `Bound` (`ReleaseNow`: no per-thread lookup per field).  A
    /// `GreenletBase` is dropped with the GIL held: by its `tp_dealloc`, or in `__new__`.
    fn drop(&mut self) {
        let py = pystate::attached();
        if let Some(c) = self.c.get_mut().take() {
            crate::release_continulet(c.into_bound(py)); // B5: reused by the next start
        }
        drop(self.ts.get_mut().take().map(|t| t.into_bound(py)));
        (self.home.get_mut().take(), self.parent.get_mut().take()).release_now(py);
        (self.context.get_mut().take(), self.run.get_mut().take()).release_now(py);
    }
}

/// The per-thread state of greenlet (the base of `greenlet._ThreadState` on CPython).
/// Frozen, as [`GreenletBase`].
#[pyclass(subclass, frozen, module = "greenlet", name = "_ThreadStateBase")]
#[derive(Default)]
pub(crate) struct ThreadStateBase {
    #[pyo3(get)]
    current: GilCell<Option<Py<GreenletBase>>>,
    #[pyo3(get)]
    main: GilCell<Option<Obj>>,
    /// The greenlet a switch under way comes from (None: no switch under way).
    #[pyo3(get)]
    origin: GilCell<Option<Obj>>,
    #[pyo3(get)]
    trace: GilCell<Option<Obj>>,
    /// Greenlets whose kill is deferred (a Python list).
    #[pyo3(get)]
    deleteme: GilCell<Option<Obj>>,
    #[pyo3(get)]
    thread: GilCell<Option<Obj>>,
    #[pyo3(get)]
    exited: GilCell<bool>,
    /// G3: the creating thread's `PyThreadState` address.
    tstate: usize,
}

/// What the fast path needs from `greenlet` (set once by [`greenlet_init`]).
struct Refs {
    deliver: Obj,
    after: Obj,
    /// `_thrown_in`: the receiver side of a switch that raised (greenlet.py's I5).
    thrown_in: Obj,
    /// `greenlet._tls` (its `ts`: this thread's state) and `_check_switch`, `_die`,
    /// `GreenletExit`: for the native start of a greenlet.
    tls: Obj,
    check_switch: Obj,
    die: Obj,
    greenlet_exit: Obj,
    /// `_current`, `_set_parent` and the Python `greenlet.__init__` (`_init_slow`), for the
    /// native `__new__` / `__init__`.
    current: Obj,
    set_parent: Obj,
    init_slow: Obj,
    /// greenlet.py's `greenlet.__del__`, run by the native finalizer when there is something
    /// to do.
    finalize_slow: Obj,
    /// The `run` property of `greenlet.greenlet` (see [`run_of`]).
    run_property: Obj,
}

static REFS: PyOnceLock<Refs> = PyOnceLock::new();

/// Casts of greenlets and thread states (instances of greenlet.py's subclasses).
static GREENLET_CLASS: pystate::cast::KnownSubclass<GreenletBase> =
    pystate::cast::KnownSubclass::new();
static THREAD_STATE_CLASS: pystate::cast::KnownSubclass<ThreadStateBase> =
    pystate::cast::KnownSubclass::new();

/// G5: the `greenlet._tls.ts` looked up last, by whichever thread (a load under the GIL, not
/// a thread-local lookup); released when it is marked exited.
static LAST_TS: GilCell<Option<Py<ThreadStateBase>>> = GilCell::new(None);

/// `greenlet._tls.ts`: this thread's state (an `AttributeError` before greenlet.py made it),
/// from the cache when it is this thread's and still valid (G5).
fn thread_state<'py>(py: Python<'py>, refs: &Refs) -> PyResult<Bound<'py, PyAny>> {
    if let Some(ts) = LAST_TS.bound(py) {
        let b = ts.get();
        if b.tstate == pystate::thread_state_id() && !b.exited.get(py) {
            return Ok(ts.into_any());
        }
    }
    let ts = refs.tls.bind(py).getattr(intern!(py, "ts"))?;
    if let Some(t) = THREAD_STATE_CLASS.cast(&ts) {
        let old = LAST_TS.replace(py, Some(t.clone().unbind()));
        drop(old); // G4: after the store
    }
    Ok(ts)
}

#[pymethods]
impl GreenletBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        // greenlet.py's `__new__`: the parent is the current greenlet (`_current()`).
        let g = Self::default();
        g.parent.replace(py, current_for_new(py)?); // (the old value: None)
        Ok(g)
    }

    /// `__init__(run=<missing>, parent=None)`: the common calls here, every other one (and
    /// every error) by greenlet.py's own `__init__`.
    #[pyo3(signature = (*args, **kwargs))]
    fn __init__(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let refs = refs(py)?;
        let fresh = {
            let b = slf.get();
            !b.main.get(py) && b.c.is_none(py)
        };
        let Some((run, parent)) = init_args(args, kwargs).filter(|_| fresh) else {
            let mut full = vec![slf.as_any().clone()];
            full.extend(args.iter());
            let full = PyTuple::new(py, full)?;
            refs.init_slow.bind(py).call(full, kwargs)?;
            return Ok(());
        };
        if let Some(run) = run {
            let old = slf.get().run.replace(py, Some(run.unbind()));
            drop(old); // G4
        }
        if let Some(parent) = parent.filter(|p| !p.is_none()) {
            refs.set_parent.call1(py, (slf, parent))?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.c.visit(&visit)?;
        self.ts.visit(&visit)?;
        self.home.visit(&visit)?;
        self.parent.visit(&visit)?;
        self.context.visit(&visit)?;
        self.run.visit(&visit)
    }

    #[getter(_greenlet__run)]
    fn get_run(slf: &Bound<'_, Self>) -> PyResult<Obj> {
        let run = slf.get().run.cloned(slf.py());
        run.ok_or_else(|| no_run_attribute(slf))
    }

    #[setter(_greenlet__run)]
    fn set_run(slf: &Bound<'_, Self>, value: Obj) {
        let old = slf.get().run.replace(slf.py(), Some(value));
        drop(old); // G4
    }

    /// `del`: an `AttributeError` when not set, as for an empty slot.
    #[deleter(_greenlet__run)]
    fn delete_run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let old = slf.get().run.take(slf.py());
        if old.is_none() {
            return Err(no_run_attribute(slf));
        }
        drop(old); // G4
        Ok(())
    }

    #[setter(_greenlet__c)]
    fn set_c(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        drop(self.c.replace(value.py(), typed(value)?)); // G4: after the store
        Ok(())
    }

    #[setter(_greenlet__ts)]
    fn set_ts(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        drop(self.ts.replace(value.py(), typed(value)?)); // G4
        Ok(())
    }

    #[setter(_greenlet__home)]
    fn set_home(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.home, value);
    }

    #[setter(_greenlet__parent)]
    fn set_parent(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.parent, value);
    }

    #[setter(_greenlet__context)]
    fn set_context(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.context, value);
    }

    #[setter(_greenlet__main)]
    fn set_main(&self, py: Python<'_>, value: bool) {
        self.main.set(py, value);
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let fields = [&self.home, &self.parent, &self.context, &self.run];
        let old = (
            self.c.take(py),
            self.ts.take(py),
            fields.map(|f| f.take(py)),
        );
        drop(old); // G4: every field is cleared before any finalizer runs
    }

    /// switch(*args, **kwargs)
    ///
    /// Switch execution to this greenlet, starting it with ``run(*args, **kwargs)`` if it has
    /// not started yet.  Returns the value passed when switching back.
    #[pyo3(signature = (*args, **kwargs))]
    fn switch(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Obj> {
        // Only calls here: this frame stays on the stack during the switch, and every byte of
        // it is copied on every switch.
        let refs = refs(slf.py())?;
        let end = std::ptr::null();
        if let Some((from, tc)) = fast_path_state(slf) {
            let packed = pack(slf.py(), args, kwargs);
            return crate::deliver(transfer(refs, from, tc, slf, packed, end));
        }
        if let Some(start) = start_state(refs, slf) {
            return start_native(refs, start, slf, args, kwargs, end);
        }
        slow_switch(refs, slf, args, kwargs)
    }
}

/// `switch()` / `switch(value)` as a raw method (`pystate::fastcall`): [`GreenletBase::switch`]
/// for its common call shapes, knowing where the caller's arguments end (`end`), so that a
/// suspended greenlet's calling frame shows its whole value stack (pystate `refs`, R2).
fn switch_raw<'py>(
    slf: &Bound<'py, PyAny>,
    value: Option<&Bound<'py, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    let py = slf.py();
    let g = match GREENLET_CLASS.cast(slf) {
        Some(g) => g,
        None => match slf.cast::<GreenletBase>() {
            Ok(g) => g,
            Err(e) => return Payload::from_err(e),
        },
    };
    let Some(refs) = REFS.get(py) else {
        return Payload::from_err(not_connected());
    };
    if let Some((from, tc)) = fast_path_state(g) {
        let packed = value.map_or_else(
            || PyTuple::empty(py).into_any().unbind(),
            |v| v.clone().unbind(),
        );
        return transfer(refs, from, tc, g, packed, end);
    }
    Payload::of(switch_raw_other(refs, g, value, end))
}

/// [`switch_raw`] for an unstarted target, or any other case (`_deliver`).  Out of line: its
/// temporaries stay out of the frames of a greenlet suspended by the common switch.
#[inline(never)]
fn switch_raw_other(
    refs: &Refs,
    g: &Bound<'_, GreenletBase>,
    value: Option<&Bound<'_, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> PyResult<Obj> {
    let py = g.py();
    let args = match value {
        Some(v) => PyTuple::new(py, [v])?,
        None => PyTuple::empty(py),
    };
    if let Some(start) = start_state(refs, g) {
        return start_native(refs, start, g, &args, None, end);
    }
    slow_switch(refs, g, &args, None)
}

/// What greenlet_init connected.
fn refs(py: Python<'_>) -> PyResult<&Refs> {
    REFS.get(py).ok_or_else(not_connected)
}

/// The error of a native path used before greenlet_init connected it.
#[cold]
#[inline(never)]
fn not_connected() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("greenlet native path not initialized")
}

/// `switch` for every case but the common one: greenlet.py's `_deliver`.
#[inline(never)]
fn slow_switch(
    refs: &Refs,
    target: &Bound<'_, GreenletBase>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Obj> {
    let py = target.py();
    let kwargs: Obj = kwargs.map_or_else(
        || PyDict::new(py).into_any().unbind(),
        |k| k.clone().into_any().unbind(),
    );
    refs.deliver.call1(py, (target, args, kwargs, py.None()))
}

/// Where a switch leaves from: this thread's greenlet state, the current greenlet and its
/// continulet.
struct Here<'py> {
    ts: Bound<'py, ThreadStateBase>,
    cur: Bound<'py, GreenletBase>,
    cc: Bound<'py, Continulet>,
}

/// [`Here`] from the thread state `ts`, if it belongs to this thread and is alive (G3), the
/// current greenlet is not `target`, and (`quiet`) no tracer or deferred kill is pending.
fn here<'py>(
    ts: Bound<'py, ThreadStateBase>,
    target: &Bound<'py, GreenletBase>,
    quiet: bool,
) -> Option<Here<'py>> {
    let py = ts.py();
    let cur = {
        let b = ts.get();
        if b.tstate != pystate::thread_state_id()
            || b.exited.get(py)
            || (quiet && needs_after(py, b))
        {
            return None;
        }
        match b.current.bound(py) {
            Some(c) if !c.is(target) => c,
            _ => return None,
        }
    };
    let cc = cur.get().c.bound(py)?;
    Some(Here { ts, cur, cc })
}

/// The fast path's objects — where it leaves from and the target's continulet — when
/// `switch` can take it: the target is started and alive in this thread (G3) and is not the
/// current greenlet.  Anything unusual (no continulet) is left to the Python `_deliver`.
#[inline(never)]
fn fast_path_state<'py>(
    target: &Bound<'py, GreenletBase>,
) -> Option<(Here<'py>, Bound<'py, Continulet>)> {
    let py = target.py();
    let t = target.get();
    let (ts, tc) = (t.ts.bound(py)?, t.c.bound(py)?);
    Some((here(ts, target, false)?, tc))
}

/// The error of reading or deleting `_greenlet__run` when it is not set (an empty slot's).
fn no_run_attribute(g: &Bound<'_, GreenletBase>) -> PyErr {
    let name = g
        .get_type()
        .name()
        .map_or_else(|_| "greenlet".to_owned(), |n| n.to_string());
    pyo3::exceptions::PyAttributeError::new_err(format!(
        "'{name}' object has no attribute '_greenlet__run'"
    ))
}

/// A typed field's new value: None, or an instance of its class (a `TypeError` otherwise).
fn typed<T: pyo3::PyClass>(value: &Bound<'_, PyAny>) -> PyResult<Option<Py<T>>> {
    if value.is_none() {
        return Ok(None);
    }
    Ok(Some(value.cast::<T>()?.clone().unbind()))
}

/// The current greenlet, as the parent of a greenlet being created (`_current()`); None while
/// greenlet.py is being imported or a thread's state is being made (its main greenlet gets
/// its parent from there).
fn current_for_new(py: Python<'_>) -> PyResult<Option<Obj>> {
    let Some(refs) = REFS.get(py) else {
        return Ok(None);
    };
    let ts = match thread_state(py, refs) {
        Ok(ts) => ts,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Some(ts) = THREAD_STATE_CLASS.cast(&ts) {
        let b = ts.get();
        if !kills_pending(py, b) {
            return Ok(b.current.cloned(py).map(Py::into_any));
        }
    }
    Ok(Some(refs.current.call0(py)?))
}

/// `run` and `parent` given to `__init__`.
type InitArgs<'py> = (Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>);

/// `run` and `parent` of the common `__init__` calls — `(run)`, `(run, parent)`, and the
/// same by keyword — or None for any other call.
fn init_args<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> Option<InitArgs<'py>> {
    let n = args.len();
    if n > 2 {
        return None;
    }
    let mut run = if n > 0 { args.get_item(0).ok() } else { None };
    let mut parent = if n > 1 { args.get_item(1).ok() } else { None };
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let k = k.cast::<pyo3::types::PyString>().ok()?;
            match k.to_str().ok()? {
                "run" if run.is_none() => run = Some(v),
                "parent" if parent.is_none() => parent = Some(v),
                _ => return None,
            }
        }
    }
    Some((run, parent))
}

/// Where the native start leaves from, when `switch` can start `target` natively: it is
/// unstarted, no tracer or deferred kill is pending, this thread's state is usable (G3), and
/// its parent chain leads to this thread's main greenlet (`_check_switch`).  Anything else is
/// left to the Python `_deliver`.
#[inline(never)]
fn start_state<'py>(refs: &Refs, target: &Bound<'py, GreenletBase>) -> Option<Here<'py>> {
    let py = target.py();
    {
        let t = target.get();
        if t.c.is_some(py) || t.ts.is_some(py) || t.main.get(py) {
            return None;
        }
    }

    let ts = thread_state(py, refs).ok()?;
    let ts = THREAD_STATE_CLASS.cast_into(ts)?;
    if !lineage_is(target, &ts) {
        return None;
    }
    here(ts, target, true)
}

/// `_lineage_main(g) is ts.main`: the first started greenlet up `g`'s parent chain lives in
/// the thread of `ts`.
fn lineage_is(g: &Bound<'_, GreenletBase>, ts: &Bound<'_, ThreadStateBase>) -> bool {
    // (The references taken here are released while the fields still hold theirs: nothing
    // is finalized, G4.)
    let py = g.py();
    let mut g = g.clone();
    loop {
        let b = g.get();
        if b.c.is_some(py) {
            let Some(home) = b
                .home
                .bound(py)
                .and_then(|h| THREAD_STATE_CLASS.cast_into(h))
            else {
                return false;
            };
            let (hm, tm) = (&home.get().main, &ts.get().main);
            return tm.is_some(py) && hm.same_as(py, tm);
        }
        match b.parent.bound(py).and_then(|p| GREENLET_CLASS.cast_into(p)) {
            Some(p) => g = p,
            None => return false,
        }
    }
}

/// `target.run` for an unstarted greenlet: its `_greenlet__run` field when the class looks
/// attributes up the default way and its `run` is greenlet.py's property (which returns that
/// field for an unstarted, non-main greenlet); else the attribute (a subclass's `run` or
/// `__getattribute__`: may run any code).
/// The second value tells whether reading it may have run code.
fn run_of<'py>(
    refs: &Refs,
    target: &Bound<'py, GreenletBase>,
) -> PyResult<(Bound<'py, PyAny>, bool)> {
    /// The last greenlet class whose `run` was found to be greenlet.py's property.
    static SEEN: pystate::cast::TypeVerdict = pystate::cast::TypeVerdict::new();
    let py = target.py();
    let ty = target.get_type();
    let plain =
        pystate::cast::class_attr_is(&ty, intern!(py, "run"), refs.run_property.bind(py), &SEEN);
    if plain {
        let b = target.get();
        if !b.main.get(py) && b.c.is_none(py) {
            return match b.run.bound(py) {
                Some(run) => Ok((run, false)),
                None => Err(pyo3::exceptions::PyAttributeError::new_err("run")),
            };
        }
    }
    Ok((target.getattr(intern!(py, "run"))?, true))
}

/// `_deliver` for an unstarted greenlet, natively: read `run` (a property, or a subclass's
/// method: may run any code), `_begin` (a continulet whose native body is
/// [`greenlet_bootstrap`]), then `_transfer` into it.
#[inline(never)]
fn start_native(
    refs: &Refs,
    start: Here<'_>,
    target: &Bound<'_, GreenletBase>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
    end: pystate::fastcall::ArgsEnd,
) -> PyResult<Obj> {
    let py = target.py();
    let (run, ran_code) = run_of(refs, target)?;
    if ran_code {
        if target.get().c.is_some(py) {
            // `run` started it (`_deliver` re-checks this too, and then takes it as started).
            return slow_switch(refs, target, args, kwargs);
        }
        if !lineage_is(target, &start.ts) {
            // `run` changed the parent chain: `_check_switch` raises the error it warrants.
            refs.check_switch.call1(py, (target, &start.ts))?;
            return slow_switch(refs, target, args, kwargs);
        }
    }
    let kwargs = kwargs.filter(|k| !k.is_empty());
    let starting = Starting {
        g: target.clone().unbind(),
        run: run.unbind(),
        args: args.clone().unbind(),
        kwargs: kwargs.map(|k| k.clone().unbind()),
        ts: start.ts.clone().unbind(),
    };
    let tc = crate::new_native_unstarted(&py.None().into_bound(py), greenlet_bootstrap)?;
    {
        let ts = start.ts.clone().unbind();
        let t = target.get();
        let old_c = t.c.replace(py, Some(tc.clone().unbind()));
        let old_ts = t.ts.replace(py, Some(ts.clone_ref(py)));
        let old_home = t.home.replace(py, Some(ts.into_any()));
        drop((old_c, old_ts, old_home)); // G4: after the stores
    }
    // `_transfer` into it, its context made by the switch itself (one stack switch, not the
    // three of an eager start and a first switch in).
    let Here { ts, cur, cc } = start;
    hand_over(&ts, cur, target);
    // G6: set last — `hand_over` may release objects, whose finalizers may start greenlets.
    let unclaimed = STARTING.replace(py, Some(starting));
    drop(unclaimed); // G4 (none is left over: every start takes its own back)
    let result = match Continulet::check_switch_to(&cc, Some(tc)) {
        Ok(Some(ref plan)) => {
            // G2, G7; G6: the body took what STARTING held, unless the start failed before
            // it ran.  (The plan is matched in place: a copy would take room in this frame.)
            let kept = keep_unless_origin(cc, plan);
            let result = crate::start_and_deliver_hinted(plan, py.None(), end, ts.as_ptr());
            let unclaimed = STARTING.take(py);
            drop(unclaimed); // G4
            let origin = kept.as_ref().unwrap_or(&plan.origin.0);
            return crate::deliver(taken_over(refs, &ts, origin, Payload::of(result)));
        }
        Ok(None) => Payload::Value(py.None()),
        Err(e) => Payload::Exc(e),
    };
    let unclaimed = STARTING.take(py);
    drop(unclaimed); // G4
    crate::deliver(taken_over(refs, &ts, &cc, result))
}

/// `cc`, unless the switch plan holds it as its origin (then it is dropped: G7, one
/// reference less on the suspended stack, and the plan's stands for it after the switch).
fn keep_unless_origin<'py>(
    cc: Bound<'py, Continulet>,
    plan: &crate::SwitchPlan,
) -> Option<Bound<'py, Continulet>> {
    (!plan.origin.0.is(&cc)).then_some(cc)
}

/// What [`greenlet_bootstrap`] needs from [`start_native`], handed over in [`STARTING`] (G6).
struct Starting {
    g: Py<GreenletBase>,
    run: Obj,
    args: Py<PyTuple>,
    kwargs: Option<Py<PyDict>>,
    ts: Py<ThreadStateBase>,
}

/// G6: the greenlet [`start_native`] is starting, from just before its continulet's first
/// switch until the body takes it (first thing, before any code can run) — so nothing on the
/// new greenlet's stack references the greenlet (I3).  Left over only when the start failed
/// before the body ran: [`start_native`] drops it then.  One for the process, not per thread:
/// no code runs and the GIL is not released between its store and its take, so no other
/// start can come in between (pystate `gil_cell`: a load and a store, not a thread-local
/// lookup).
static STARTING: GilCell<Option<Starting>> = GilCell::new(None);

/// `_bootstrap`, natively: the body of a greenlet started by [`start_native`].  Its first
/// steps and the common way of dying (into a started parent of this thread) are here; any
/// other way of dying is greenlet.py's `_die`.  Nothing here references the greenlet while
/// its `run` runs (I3).
fn greenlet_bootstrap(c: &Bound<'_, Continulet>, _unused: &Bound<'_, PyAny>) -> Payload {
    // Only calls here, returning two words each: this frame and `call_run`'s stay on the
    // greenlet's stack while `run` runs, and every byte of them is copied with each of its
    // switches.
    let (ts, call) = match prepare_run(c) {
        Ok(prepared) => prepared,
        Err(e) => return Payload::Exc(e),
    };
    let outcome = call_run(&ts, call);
    finish_payload(c, &ts, outcome)
}

/// `run(*args, **kwargs)` (or the error of the steps before it).  While `run` runs, the
/// greenlet's stack owns a reference to each of `ts` (the caller's) and `run`, `args`,
/// `kwargs` (here): recorded at the bottom of its context (G7).
#[inline(never)]
fn call_run(ts: &Bound<'_, ThreadStateBase>, call: Result<RunCall<'_>, Box<PyErr>>) -> Payload {
    let (run, args, kwargs) = match call {
        Ok(call) => call,
        Err(e) => return Payload::Exc(e),
    };
    let kw_ptr = kwargs.as_ref().map_or(std::ptr::null_mut(), Bound::as_ptr);
    let record = pystate::StartRecord::current();
    record.set([ts.as_ptr(), run.as_ptr(), args.as_ptr(), kw_ptr]);
    let called = pystate::call(&run, &args, kwargs.as_ref());
    record.set(pystate::START_HELD_NONE);
    called.into_payload(ts.py())
}

/// `run` with its arguments, ready to call.
type RunCall<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyDict>>,
);

/// `_bootstrap`'s first steps: take what [`start_native`] left in [`STARTING`] (G6),
/// `_after(ts, "switch")`, release the `run` attribute, drop the greenlet (I3).  An error of
/// these steps is what the greenlet ends with, as in `_bootstrap`'s `try`.
/// (Errors boxed, see `Payload::of`.)
#[inline(never)]
#[allow(clippy::type_complexity)]
fn prepare_run<'py>(
    c: &Bound<'py, Continulet>,
) -> Result<
    (
        Bound<'py, ThreadStateBase>,
        Result<RunCall<'py>, Box<PyErr>>,
    ),
    Box<PyErr>,
> {
    let py = c.py();
    let refs = refs(py).map_err(Box::new)?;
    let Some(st) = STARTING.take(py) else {
        return Err(Box::new(pyo3::exceptions::PySystemError::new_err(
            "greenlet: a native start without its greenlet",
        )));
    };
    let (g, run, args) = (
        st.g.into_bound(py),
        st.run.into_bound(py),
        st.args.into_bound(py),
    );
    let (kwargs, ts) = (st.kwargs.map(|k| k.into_bound(py)), st.ts.into_bound(py));
    let steps = (|| {
        // `_after(ts, "switch")`; then the run attribute is released here, in the new
        // greenlet, as the C greenlet's inner_bootstrap does: its __del__ may switch.
        crate::deliver(taken_over(refs, &ts, c, Payload::Value(py.None())))?;
        let old = g.get().run.take(py);
        drop(old); // G4

        Ok(())
    })();
    drop(g); // I3
    Ok((ts, steps.map(|()| (run, args, kwargs)).map_err(Box::new)))
}

/// [`finish`], for the body's frame (see `Payload::of`).
#[inline(never)]
fn finish_payload(
    cont: &Bound<'_, Continulet>,
    ts: &Bound<'_, ThreadStateBase>,
    outcome: Payload,
) -> Payload {
    let finished = refs(cont.py()).and_then(|refs| finish(refs, cont, ts, crate::deliver(outcome)));
    Payload::of(finished)
}

/// After `run`: a `GreenletExit` counts as a result; then `_die`, into the parent, and what
/// `cont` ends with.  The common case natively — the parent (or, with none, the main
/// greenlet) is started and lives in this thread: make it current and hand it `cont`'s end;
/// any other case is greenlet.py's `_die`, called before anything changed.
#[inline(never)]
fn finish(
    refs: &Refs,
    cont: &Bound<'_, Continulet>,
    ts: &Bound<'_, ThreadStateBase>,
    outcome: PyResult<Obj>,
) -> PyResult<Obj> {
    let py = cont.py();
    let (result, exc) = match outcome {
        Ok(v) => (v, None),
        Err(e) if e.is_instance(py, refs.greenlet_exit.bind(py)) => {
            (e.into_value(py).into_any(), None)
        }
        Err(e) => (py.None(), Some(e)),
    };
    let dying = ts.get().current.bound(py);
    let parent = dying.as_ref().and_then(|g| match g.get().parent.bound(py) {
        Some(p) => GREENLET_CLASS.cast_into(p),
        None => GREENLET_CLASS.cast_into(ts.get().main.bound(py)?),
    });
    let native = match (&dying, &parent) {
        (Some(_), Some(p)) => {
            let pb = p.get();
            pb.ts.holds(py, ts) && pb.c.is_some(py)
        }
        _ => false,
    };
    let (Some(g), Some(p), true) = (dying, parent, native) else {
        let exc_obj = exc.map_or_else(|| py.None(), |e| e.into_value(py).into_any());
        let pair = refs.die.call1(py, (cont, ts, result, exc_obj))?;
        let (died_with, value): (Bound<'_, PyAny>, Obj) = pair.extract(py)?;
        if died_with.is_none() {
            return Ok(value);
        }
        return Err(PyErr::from_value(died_with));
    };
    // As `_die`: the greenlet is dead (no thread state; releasing it runs nothing: `ts` holds
    // it), then `_transfer`'s changes into the parent, and `cont`'s end handed to the
    // parent's continulet.
    let old_ts = g.get().ts.take(py);
    drop(old_ts.map(|t| t.into_bound(py)));
    let pc = p.get().c.bound(py);

    hand_over(ts, g, &p);
    drop(p);
    if let Some(pc) = pc {
        crate::permute_two(cont, &pc)?;
    }
    exc.map_or(Ok(result), Err)
}

/// greenlet's argument packing: one positional argument is passed as itself.
fn pack(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> Obj {
    match kwargs.filter(|k| !k.is_empty()) {
        Some(k) if args.is_empty() => k.clone().into_any().unbind(),
        Some(k) => PyTuple::new(py, [args.as_any(), k.as_any()])
            .map_or_else(|_| py.None(), |t| t.into_any().unbind()),
        None if args.len() == 1 => args.get_item(0).map_or_else(|_| py.None(), Bound::unbind),
        None => args.clone().into_any().unbind(),
    }
}

/// `greenlet._transfer(ts, target, _cswitch, value)`: every check was made by
/// [`fast_path_state`] before the first change.  Its frame stays on the stack during the
/// switch, so the work before and after it is done in functions of their own.
fn transfer<'py>(
    refs: &Refs,
    from: Here<'py>,
    tc: Bound<'py, Continulet>,
    target: &Bound<'py, GreenletBase>,
    value: Obj,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    let Here { ts, cur, cc } = from;
    hand_over(&ts, cur, target);
    // `cc.switch(value, to=tc)`, with PyPy's checks (an uninitialized continulet, a main
    // greenlet's, counts as "no `to`" / "switch to `to`": greenlet.py's I1).
    match Continulet::check_switch_to(&cc, Some(tc)) {
        Ok(Some(ref plan)) => {
            // (Matched in place: a copy of the plan would take room in this frame.)
            let kept = keep_unless_origin(cc, plan); // G7
            let payload = Payload::Value(value);
            let result = crate::switch_payload_hinted(plan, payload, end, ts.as_ptr()); // G2
            taken_over(refs, &ts, kept.as_ref().unwrap_or(&plan.origin.0), result)
        }
        Ok(None) => taken_over(refs, &ts, &cc, Payload::Value(value)),
        Err(e) => taken_over(refs, &ts, &cc, Payload::Exc(e)),
    }
}

/// Before the switch: the changes of `_transfer`, in its order (the origin first: from then
/// on a `__del__` defers its kill), each old value released right after its own change;
/// `cur` is released last (G1).
#[inline(never)]
fn hand_over(
    ts: &Bound<'_, ThreadStateBase>,
    cur: Bound<'_, GreenletBase>,
    target: &Bound<'_, GreenletBase>,
) {
    let py = ts.py();
    let t = ts.get();
    let old_origin = t.origin.replace(py, Some(cur.clone().into_any().unbind()));
    old_origin.release_now(py);
    let ctx = pystate::frame_into_py(py, pystate::get_context());
    let old_ctx = cur.get().context.replace(py, Some(ctx));
    old_ctx.release_now(py);
    let target_ctx = target.get().context.take(py);
    pystate::set_context(target_ctx.map_or(std::ptr::null_mut(), Py::into_ptr));
    let old_current = t.current.replace(py, Some(target.clone().unbind()));
    drop(old_current.map(|c| c.into_bound(py))); // it is `cur`, still referenced here
    drop(cur); // G1
}

/// After the switch, on the resumed side (the greenlet of continulet `cc`): what `_transfer`
/// does after its switch (the Python `_after` only when a tracer or a deferred kill needs it;
/// an exception goes through `_thrown_in`, which puts right a death interrupted before its
/// hand-over: greenlet.py's I5).
#[inline(never)]
fn taken_over(
    refs: &Refs,
    ts: &Bound<'_, ThreadStateBase>,
    cc: &Bound<'_, Continulet>,
    result: Payload,
) -> Payload {
    let steps = || -> PyResult<Obj> {
        let py = ts.py();
        match crate::deliver(result) {
            Ok(v) => {
                // G4: the origin may hold the last reference to the greenlet we came from,
                // whose __del__ kills it, reading `ts`.
                let origin = {
                    let b = ts.get();
                    if needs_after(py, b) {
                        None
                    } else {
                        Some(b.origin.take(py))
                    }
                };
                match origin {
                    Some(origin) => origin.release_now(py),
                    None => drop(refs.after.call1(py, (ts, intern!(py, "switch")))?),
                }
                Ok(v)
            }
            Err(e) => {
                refs.thrown_in.call1(py, (ts, cc))?;
                Err(e)
            }
        }
    };
    Payload::of(steps())
}

/// `ts.trace is not None or ts.deleteme`: the receiver must run the Python `_after`.
fn needs_after(py: Python<'_>, ts: &ThreadStateBase) -> bool {
    ts.trace.is_some(py) || kills_pending(py, ts)
}

/// `ts.deleteme` is not empty: kills of collected greenlets wait for the next switch.
fn kills_pending(py: Python<'_>, ts: &ThreadStateBase) -> bool {
    ts.deleteme
        .bound(py)
        .is_some_and(|d| d.cast::<PyList>().map_or(true, |l| !l.is_empty()))
}

#[pymethods]
impl ThreadStateBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        ThreadStateBase {
            tstate: pystate::thread_state_id(),
            ..Self::default()
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.current.visit(&visit)?;
        for f in self.object_fields() {
            f.visit(&visit)?;
        }
        Ok(())
    }

    #[setter(current)]
    fn set_current(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        drop(self.current.replace(value.py(), typed(value)?)); // G4: after the store
        Ok(())
    }

    #[setter(main)]
    fn set_main(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.main, value);
    }

    #[setter(origin)]
    fn set_origin(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.origin, value);
    }

    #[setter(trace)]
    fn set_trace(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.trace, value);
    }

    #[setter(deleteme)]
    fn set_deleteme(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.deleteme, value);
    }

    #[setter(thread)]
    fn set_thread(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.thread, value);
    }

    /// Set when the thread's locals are destroyed (G3); the cache lets go of it then (G5).
    #[setter(exited)]
    fn set_exited(slf: &Bound<'_, Self>, value: bool) {
        let py = slf.py();
        slf.get().exited.set(py, value);
        if value && LAST_TS.holds(py, slf) {
            let old = LAST_TS.take(py);
            drop(old); // (the caller holds `slf`: nothing is freed here)
        }
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let old = (
            self.current.take(py),
            self.object_fields().map(|f| f.take(py)),
        );
        drop(old); // G4: every field is cleared before any finalizer runs
    }
}

impl ThreadStateBase {
    /// Its fields holding any object (all but `current`).
    fn object_fields(&self) -> [&GilCell<Option<Obj>>; 5] {
        [
            &self.main,
            &self.origin,
            &self.trace,
            &self.deleteme,
            &self.thread,
        ]
    }
}

/// Connect the fast path to `greenlet` (called once, at the end of its import).
#[pyfunction]
fn greenlet_init(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let refs = Refs {
        deliver: module.getattr("_deliver")?.unbind(),
        after: module.getattr("_after")?.unbind(),
        thrown_in: module.getattr("_thrown_in")?.unbind(),
        tls: module.getattr("_tls")?.unbind(),
        check_switch: module.getattr("_check_switch")?.unbind(),
        die: module.getattr("_die")?.unbind(),
        greenlet_exit: module.getattr("GreenletExit")?.unbind(),
        current: module.getattr("_current")?.unbind(),
        set_parent: module.getattr("_set_parent")?.unbind(),
        init_slow: module.getattr("_init_slow")?.unbind(),
        finalize_slow: module.getattr("_finalize_slow")?.unbind(),
        run_property: module.getattr("greenlet")?.getattr("run")?.unbind(),
    };
    let _ = REFS.set(py, refs);
    let greenlet = module
        .getattr("greenlet")?
        .cast_into::<pyo3::types::PyType>()?;
    pystate::finalize::set_finalizer::<GreenletFinalizer>(&greenlet);
    Ok(())
}

/// The finalizer of `greenlet.greenlet` itself (its subclasses keep the Python `__del__` they
/// inherit): nothing to do for a greenlet that is dead, never started or a main greenlet —
/// most of them, and no Python call, so a greenlet dying at the recursion limit reports
/// nothing — else greenlet.py's `__del__` (kill it with `GreenletExit`, or defer that).
struct GreenletFinalizer;

impl pystate::finalize::Finalize for GreenletFinalizer {
    fn finalize(obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        if let Some(g) = GREENLET_CLASS.cast(obj) {
            let b = g.get();
            if b.ts.is_none(py) || b.main.get(py) || b.c.is_none(py) {
                return Ok(());
            }
        }
        refs(py)?.finalize_slow.bind(py).call1((obj,))?;
        Ok(())
    }
}

/// `GreenletBase.__new__` without pyo3's argument copies and slot lookup (`pystate::slots`):
/// the parent is the current greenlet, the rest is the default.
struct GreenletNew;

impl pystate::slots::RawNew for GreenletNew {
    type Class = GreenletBase;

    fn init(obj: &Bound<'_, GreenletBase>) -> PyResult<()> {
        let py = obj.py();
        let parent = current_for_new(py)?; // (may run Python code)
        let old = obj.get().parent.replace(py, parent);
        drop(old); // G4 (None: a fresh greenlet)
        Ok(())
    }

    fn probe_is_default(probe: &Bound<'_, GreenletBase>) -> bool {
        let py = probe.py();
        let GreenletBase {
            c,
            ts,
            home,
            parent,
            context,
            main,
            run,
        } = probe.get();
        c.is_none(py)
            && ts.is_none(py)
            && [home, parent, context, run].iter().all(|f| f.is_none(py))
            && !main.get(py)
    }
}

/// Whether greenlets are created by the raw `tp_new` (`pystate::slots`; pyo3's otherwise).
#[pyfunction]
fn greenlet_new_is_raw(py: Python<'_>) -> bool {
    pystate::slots::is_raw_new::<GreenletNew>(&py.get_type::<GreenletBase>())
}

/// Register the greenlet bases in `continulet._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GreenletBase>()?;
    // (Before greenlet.py makes its subclass, which copies the slot: pystate::slots Z3.)
    pystate::slots::set_raw_new::<GreenletNew>(&m.py().get_type::<GreenletBase>());
    pystate::fastcall::install_raw_method(
        &m.py().get_type::<GreenletBase>(),
        pystate::fastcall::RawMethod::GreenletSwitch,
        switch_raw,
    )?;
    m.add_class::<ThreadStateBase>()?;
    m.add_function(wrap_pyfunction!(greenlet_init, m)?)?;
    m.add_function(wrap_pyfunction!(greenlet_new_is_raw, m)?)?;
    Ok(())
}
