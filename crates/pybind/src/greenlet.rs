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
//! * **G2** (the crate's B2) No pyo3 borrow guard is held across the switch: every
//!   `borrow`/`borrow_mut` ends before `Continulet::do_switch`.
//! * **G3** A `ThreadStateBase` belongs to the thread that created it (`tstate`: that thread's
//!   `PyThreadState` address); the fast path is taken only on that thread.  An address can be
//!   reused once its thread has exited, so the fast path also requires `exited` to be false
//!   (greenlet.py sets it when the thread's locals are destroyed, before its thread state is).
//! * **G4** No Python object is released while a borrow guard of these objects is held: a
//!   release can run a finalizer (a greenlet's `__del__` kills it, reading and writing `ts` and
//!   greenlets), which would find them borrowed.  Old values are taken out, the guard ends,
//!   then they are dropped: in the fast path, and in every attribute setter
//!   (`fields::set_field`, invariant F1).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::{pystate, Continulet, Payload};

type Obj = Py<PyAny>;

/// The fields of a greenlet (the base of `greenlet.greenlet` on CPython).
#[pyclass(subclass, dict, weakref, module = "greenlet", name = "_GreenletBase")]
#[derive(Default)]
pub(crate) struct GreenletBase {
    /// Its continulet once started (the main greenlet's is uninitialized).
    #[pyo3(get, name = "_greenlet__c")]
    c: Option<Py<Continulet>>,
    /// Its thread's state while it is alive, None before it starts and once it is dead.
    #[pyo3(get, name = "_greenlet__ts")]
    ts: Option<Py<ThreadStateBase>>,
    /// The thread state it started in (kept after death).
    #[pyo3(get, name = "_greenlet__home")]
    home: Option<Obj>,
    #[pyo3(get, name = "_greenlet__parent")]
    parent: Option<Obj>,
    /// Its saved contextvars context while it is not running.
    #[pyo3(get, name = "_greenlet__context")]
    context: Option<Obj>,
    #[pyo3(get, set, name = "_greenlet__main")]
    main: bool,
}

/// The per-thread state of greenlet (the base of `greenlet._ThreadState` on CPython).
#[pyclass(subclass, module = "greenlet", name = "_ThreadStateBase")]
pub(crate) struct ThreadStateBase {
    #[pyo3(get)]
    current: Option<Py<GreenletBase>>,
    #[pyo3(get)]
    main: Option<Obj>,
    /// The greenlet a switch under way comes from (None: no switch under way).
    #[pyo3(get)]
    origin: Option<Obj>,
    #[pyo3(get)]
    trace: Option<Obj>,
    /// Greenlets whose kill is deferred (a Python list).
    #[pyo3(get)]
    deleteme: Option<Obj>,
    #[pyo3(get)]
    thread: Option<Obj>,
    #[pyo3(get, set)]
    exited: bool,
    /// G3: the creating thread's `PyThreadState` address.
    tstate: usize,
}

/// What the fast path needs from `greenlet` (set once by [`greenlet_init`]).
struct Refs {
    deliver: Obj,
    after: Obj,
}

static REFS: PyOnceLock<Refs> = PyOnceLock::new();

#[pymethods]
impl GreenletBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self::default()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(c) = &self.c {
            visit.call(c)?;
        }
        if let Some(ts) = &self.ts {
            visit.call(ts)?;
        }
        crate::fields::visit_all(&visit, &[&self.home, &self.parent, &self.context])
    }

    #[setter(_greenlet__c)]
    fn set_c(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = typed(value)?;
        crate::fields::set_typed_field(slf, value, |o| &mut o.c);
        Ok(())
    }

    #[setter(_greenlet__ts)]
    fn set_ts(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = typed(value)?;
        crate::fields::set_typed_field(slf, value, |o| &mut o.ts);
        Ok(())
    }

    #[setter(_greenlet__home)]
    fn set_home(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.home);
    }

    #[setter(_greenlet__parent)]
    fn set_parent(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.parent);
    }

    #[setter(_greenlet__context)]
    fn set_context(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.context);
    }

    fn __clear__(&mut self) {
        self.c = None;
        self.ts = None;
        self.home = None;
        self.parent = None;
        self.context = None;
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
        match fast_path_state(slf) {
            Some(fast) => transfer(refs, fast, slf, pack(slf.py(), args, kwargs)),
            None => slow_switch(refs, slf, args, kwargs),
        }
    }
}

/// What greenlet_init connected.
fn refs(py: Python<'_>) -> PyResult<&Refs> {
    REFS.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("greenlet native path not initialized")
    })
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

/// What the fast path of `switch` works with: the target's thread state, the current
/// greenlet, and the two continulets.
struct Fast<'py> {
    ts: Bound<'py, ThreadStateBase>,
    cur: Bound<'py, GreenletBase>,
    cc: Bound<'py, Continulet>,
    tc: Bound<'py, Continulet>,
}

/// The fast path's objects, when `switch` can take it: the target is started and alive in this
/// thread (G3) and is not the current greenlet.  Anything unusual (no continulet, a field of
/// an unexpected type) is left to the Python `_deliver`.
#[inline(never)]
fn fast_path_state<'py>(target: &Bound<'py, GreenletBase>) -> Option<Fast<'py>> {
    let py = target.py();
    let (ts, tc) = {
        let t = target.borrow();
        (
            t.ts.as_ref()?.bind(py).clone(),
            t.c.as_ref()?.bind(py).clone(),
        )
    };
    let cur = {
        let b = ts.borrow();
        if b.tstate != pystate::thread_state_id() || b.exited {
            return None;
        }
        match &b.current {
            Some(c) if !c.is(target) => c.bind(py).clone(),
            _ => return None,
        }
    };
    let cc = cur.borrow().c.as_ref()?.bind(py).clone();
    Some(Fast { ts, cur, cc, tc })
}

/// A typed field's new value: None, or an instance of its class (a `TypeError` otherwise).
fn typed<T: pyo3::PyClass>(value: &Bound<'_, PyAny>) -> PyResult<Option<Py<T>>> {
    if value.is_none() {
        return Ok(None);
    }
    Ok(Some(value.cast::<T>()?.clone().unbind()))
}

/// Release an old field value (after its borrow guard ended, G4) as a `Bound`: a plain
/// reference-count drop, without pyo3's per-thread GIL lookup that dropping a `Py` does.
fn release(py: Python<'_>, old: Option<Obj>) {
    drop(old.map(|o| o.into_bound(py)));
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
fn transfer(
    refs: &Refs,
    fast: Fast<'_>,
    target: &Bound<'_, GreenletBase>,
    value: Obj,
) -> PyResult<Obj> {
    let Fast { ts, cur, cc, tc } = fast;
    hand_over(&ts, cur, target);
    let result = continulet_switch(&cc, tc, value); // G2
    taken_over(refs, &ts, result)
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
    let old_origin = ts
        .borrow_mut()
        .origin
        .replace(cur.clone().into_any().unbind());
    release(py, old_origin);
    let ctx = pystate::frame_into_py(py, pystate::get_context());
    let old_ctx = cur.borrow_mut().context.replace(ctx);
    release(py, old_ctx);
    let target_ctx = target.borrow_mut().context.take();
    pystate::set_context(target_ctx.map_or(std::ptr::null_mut(), Py::into_ptr));
    let old_current = ts.borrow_mut().current.replace(target.clone().unbind());
    drop(old_current.map(|c| c.into_bound(py))); // it is `cur`, still referenced here
    drop(cur); // G1
}

/// After the switch, on the resumed side: what `_transfer` does after its switch (the Python
/// `_after` only when a tracer or a deferred kill needs it).
#[inline(never)]
fn taken_over(
    refs: &Refs,
    ts: &Bound<'_, ThreadStateBase>,
    result: PyResult<Obj>,
) -> PyResult<Obj> {
    let py = ts.py();
    match result {
        Ok(v) => {
            // G4: the origin may hold the last reference to the greenlet we came from,
            // whose __del__ kills it, reading `ts`.
            let origin = {
                let mut b = ts.borrow_mut();
                if needs_after(py, &b) {
                    None
                } else {
                    Some(b.origin.take())
                }
            };
            match origin {
                Some(origin) => release(py, origin),
                None => drop(refs.after.call1(py, (ts, intern!(py, "switch")))?),
            }
            Ok(v)
        }
        Err(e) => {
            refs.after.call1(py, (ts, intern!(py, "throw")))?;
            Err(e)
        }
    }
}

/// `cc.switch(value, to=tc)`, with PyPy's checks (an uninitialized continulet, a main
/// greenlet's, counts as "no `to`" / "switch to `to`": greenlet.py's I1).
fn continulet_switch(
    cc: &Bound<'_, Continulet>,
    tc: Bound<'_, Continulet>,
    value: Obj,
) -> PyResult<Obj> {
    match Continulet::check_switch_to(cc, Some(tc))? {
        Some(plan) => crate::switch_and_deliver(&plan, Payload::Value(value)),
        None => Ok(value),
    }
}

/// `ts.trace is not None or ts.deleteme`: the receiver must run the Python `_after`.
fn needs_after(py: Python<'_>, ts: &ThreadStateBase) -> bool {
    ts.trace.as_ref().is_some_and(|t| !t.is_none(py))
        || ts
            .deleteme
            .as_ref()
            .is_some_and(|d| d.bind(py).cast::<PyList>().map_or(true, |l| !l.is_empty()))
}

#[pymethods]
impl ThreadStateBase {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        ThreadStateBase {
            current: None,
            main: None,
            origin: None,
            trace: None,
            deleteme: None,
            thread: None,
            exited: false,
            tstate: pystate::thread_state_id(),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(current) = &self.current {
            visit.call(current)?;
        }
        crate::fields::visit_all(
            &visit,
            &[
                &self.main,
                &self.origin,
                &self.trace,
                &self.deleteme,
                &self.thread,
            ],
        )
    }

    #[setter(current)]
    fn set_current(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = typed(value)?;
        crate::fields::set_typed_field(slf, value, |o| &mut o.current);
        Ok(())
    }

    #[setter(main)]
    fn set_main(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.main);
    }

    #[setter(origin)]
    fn set_origin(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.origin);
    }

    #[setter(trace)]
    fn set_trace(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.trace);
    }

    #[setter(deleteme)]
    fn set_deleteme(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.deleteme);
    }

    #[setter(thread)]
    fn set_thread(slf: &Bound<'_, Self>, value: Obj) {
        crate::fields::set_field(slf, value, |o| &mut o.thread);
    }

    fn __clear__(&mut self) {
        self.current = None;
        self.main = None;
        self.origin = None;
        self.trace = None;
        self.deleteme = None;
        self.thread = None;
    }
}

/// Connect the fast path to `greenlet` (called once, at the end of its import).
#[pyfunction]
fn greenlet_init(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let refs = Refs {
        deliver: module.getattr("_deliver")?.unbind(),
        after: module.getattr("_after")?.unbind(),
    };
    let _ = REFS.set(py, refs);
    Ok(())
}

/// Register the greenlet bases in `continulet._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<GreenletBase>()?;
    m.add_class::<ThreadStateBase>()?;
    m.add_function(wrap_pyfunction!(greenlet_init, m)?)?;
    Ok(())
}
