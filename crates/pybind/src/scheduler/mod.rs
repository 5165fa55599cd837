//! # scheduler: the native Stackless core for CPython
//!
//! `pylib/stackless/_core.py` is the scheduler of the pure-Python `stackless`.  On CPython it
//! takes its three base classes from here ([`TaskletBase`], [`ChannelBase`], [`SchedBase`]:
//! the fields of tasklets, channels and per-thread schedulers live in Rust, exposed to the
//! Python core under the same attribute names) and the hot operations:
//!
//! * `channel.send` / `channel.receive` ([`ChannelBase::send`], [`ChannelBase::receive`]):
//!   the handoff or the block, and the switch, without running Python code;
//! * `stackless.schedule()` ([`schedule`]);
//! * the start and the end of a tasklet ([`tasklet_main`]: the function a tasklet's continulet
//!   runs; it calls the tasklet's function and hands the stack to the next tasklet).
//!
//! The rules (queues, channel decisions) are `stackless-core`'s; switching is the continulet
//! machinery of this crate, called from Rust ([`switch`]).  Everything off the common path is
//! *delegated* to the same function of the Python core, called with the same arguments before
//! anything was changed: callbacks installed, switch traps, preemption (`run(timeout)`: the
//! opcode tracer), blocking with nothing else runnable (watchdog, deadlock, thread blocking),
//! a partner in another thread, closed channels and block traps (their errors), an uncaught
//! tasklet error.  So behaviour cannot fork between the modes: there is one slow path.
//!
//! # State
//!
//! * Tasklet, channel and scheduler fields: in the pyclasses (frozen: their fields are pystate
//!   `GilCell`s), read and written by the Python core through their properties and by this
//!   module through the cells' loads and stores, without pyo3's borrow checks.  The run
//!   queue is the ring through `_next`/`_prev` with head `SchedBase.chain`; a channel is the
//!   sentinel of the ring of its blocked tasklets (`stackless_core::ring`).
//! * [`SCHEDULERS`]: how many scheduler objects exist (threads that used stackless).
//! * `SCHED` (thread-local): this thread's scheduler object, cached from `_core.get()`.
//!
//! # Invariants
//!
//! * **N1** (= `_core` I1) Queue mutations are mutually exclusive: with a single scheduler
//!   only its thread mutates them, and the GIL is never released in between; with more than
//!   one, the fast paths take `_core._lock` as the Python core does ([`CoreLock`]).
//! * **N2** A fast path changes nothing before it has decided not to delegate.
//! * **N3** (rule 10, B2) No [`CoreLock`] is alive across a switch (these classes are frozen:
//!   there are no borrow guards); old field values are dropped after the store that replaced
//!   them (a `__del__` may read the fields: F1).
//! * **N4** A tasklet belongs to the scheduler of the thread that made it: `TaskletBase.__new__`
//!   sets `_sched` (the cached `SCHED`, else `_core.get()`), except while [`bare_tasklet`]
//!   makes the main tasklet of a scheduler being constructed (`_core.get()` would recurse;
//!   `_core` sets that one's `_sched` itself).
//! * **N5** (see [`Busy`]) No scheduler call from code that runs in the middle of a fast-path
//!   step (a finalizer, the collector): `_core._finalize` defers its kill then.
//! * **N6** What a tasklet's Rust frames own is told to the collector (pystate `refs`, R3):
//!   [`run_body`] records the tasklet, function and arguments while the function runs; a
//!   fast-path switch ([`switch_to`]: a channel block through the raw `receive`/`send`, a
//!   `schedule()`) holds one reference only across the switch, to the tasklet it suspends,
//!   and tells it; a delegated channel block calls the Python core with borrowed arguments
//!   and the caller's argument end recorded.  So a tasklet that becomes garbage alive
//!   (paused, or blocked on a channel nobody else references) is found, and its finalizer
//!   ([`TaskletFinalizer`]) kills it; and a tasklet of a thread that exits leaves nothing
//!   behind when its stack is cleared (pystate P7).  A reference owned and not recorded only
//!   keeps the cycle alive (and leaks at thread exit); one recorded and not owned would free
//!   a live object: each recording names the frame that owns it.  The thread's scheduler is
//!   referenced by this thread (`SCHED`, set once) for as long as its tasklets can run.

mod switch;

use crate::fields::ReleaseNow;
use crate::pystate;
use crate::pystate::gil_cell::GilCell;
use crate::pystate::trace::TraceEvent;
use crate::Payload;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};
use stackless_core::budget::Budget;
use stackless_core::channel::{self, Decision, Dir, Next};
use stackless_core::ring::{self, Links};
use stackless_core::Flags;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};

type Obj = Py<PyAny>;

/// Number of live [`SchedBase`] objects (one per thread that used stackless).
static SCHEDULERS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SCHED: RefCell<Option<Py<SchedBase>>> = const { RefCell::new(None) };
}

/// What the native core needs from `stackless._core` (set once by [`stackless_init`]).
struct CoreRefs {
    core: Py<PyModule>,
    get: Obj,
    hooks: Py<Hooks>,
    bomb: Obj,
    tasklet_exit: Obj,
    system_exit: Obj,
    channel_action: Obj,
    schedule: Obj,
    tasklet_end: Obj,
    insert: Obj,
    lock_acquire: Obj,
    lock_release: Obj,
    tick_expired: Obj,
    /// `_core._finalize`: a tasklet still alive lost its last reference (kill it).
    finalize: Obj,
    /// `_core._OUR_GLOBALS`: the globals dicts of our own modules (their frames are not traced).
    our_globals: Obj,
}

static REFS: PyOnceLock<CoreRefs> = PyOnceLock::new();

/// Casts of the queue nodes (instances of `stackless.tasklet` / `stackless.channel`).
static TASKLET: pystate::cast::KnownSubclass<TaskletBase> = pystate::cast::KnownSubclass::new();
static CHANNEL: pystate::cast::KnownSubclass<ChannelBase> = pystate::cast::KnownSubclass::new();
/// Casts of the schedulers (instances of `_core._Sched`), read from a tasklet's `_sched`.
static SCHED_CLASS: pystate::cast::KnownSubclass<SchedBase> = pystate::cast::KnownSubclass::new();

fn refs(py: Python<'_>) -> PyResult<&'static CoreRefs> {
    REFS.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("stackless native core not initialized")
    })
}

/// Fields of a tasklet (the base of `stackless.tasklet` on CPython).  Frozen: its fields are
/// `GilCell`s (pystate `gil_cell`), read and written without pyo3's borrow checks.
#[pyclass(
    subclass,
    weakref,
    frozen,
    module = "continulet._native",
    name = "TaskletBase"
)]
#[derive(Default)]
pub(crate) struct TaskletBase {
    #[pyo3(get, name = "_sched")]
    sched: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_next")]
    next: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_prev")]
    prev: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_chan")]
    chan: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_cont")]
    cont: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_func")]
    func: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_args")]
    args: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_kwargs")]
    kwargs: GilCell<Option<Obj>>,
    #[pyo3(get)]
    tempval: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_blocked")]
    blocked: GilCell<i64>,
    #[pyo3(get, name = "_alive")]
    alive: GilCell<bool>,
    #[pyo3(get, name = "_atomic")]
    atomic: GilCell<bool>,
    #[pyo3(get, name = "_ignore_nesting")]
    ignore_nesting: GilCell<bool>,
    #[pyo3(get, name = "_block_trap")]
    block_trap: GilCell<bool>,
    #[pyo3(get, name = "_pending_irq")]
    pending_irq: GilCell<bool>,
}

impl TaskletBase {
    /// Its fields holding any object.
    fn object_fields(&self) -> [&GilCell<Option<Obj>>; 9] {
        [
            &self.sched,
            &self.next,
            &self.prev,
            &self.chan,
            &self.cont,
            &self.func,
            &self.args,
            &self.kwargs,
            &self.tempval,
        ]
    }

    /// Its flags (all but `_blocked`).
    fn flag_fields(&self) -> [&GilCell<bool>; 5] {
        [
            &self.alive,
            &self.atomic,
            &self.ignore_nesting,
            &self.block_trap,
            &self.pending_irq,
        ]
    }
}

#[pymethods]
impl TaskletBase {
    #[setter(_sched)]
    fn set_sched(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.sched, value);
    }

    #[setter(_next)]
    fn set_next(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.next, value);
    }

    #[setter(_prev)]
    fn set_prev(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.prev, value);
    }

    #[setter(_chan)]
    fn set_chan(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.chan, value);
    }

    #[setter(_cont)]
    fn set_cont(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.cont, value);
    }

    #[setter(_func)]
    fn set_func(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.func, value);
    }

    #[setter(_args)]
    fn set_args(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.args, value);
    }

    #[setter(_kwargs)]
    fn set_kwargs(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.kwargs, value);
    }

    #[setter(tempval)]
    fn set_tempval(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.tempval, value);
    }

    #[setter(_blocked)]
    fn set_blocked(&self, py: Python<'_>, value: i64) {
        self.blocked.set(py, value);
    }

    #[setter(_alive)]
    fn set_alive(&self, py: Python<'_>, value: bool) {
        self.alive.set(py, value);
    }

    #[setter(_atomic)]
    fn set_atomic(&self, py: Python<'_>, value: bool) {
        self.atomic.set(py, value);
    }

    #[setter(_ignore_nesting)]
    fn set_ignore_nesting(&self, py: Python<'_>, value: bool) {
        self.ignore_nesting.set(py, value);
    }

    #[setter(_block_trap)]
    fn set_block_trap(&self, py: Python<'_>, value: bool) {
        self.block_trap.set(py, value);
    }

    #[setter(_pending_irq)]
    fn set_pending_irq(&self, py: Python<'_>, value: bool) {
        self.pending_irq.set(py, value);
    }

    /// A fresh tasklet of this thread's scheduler (`stackless.tasklet.__new__`: N4), or
    /// without one while [`bare_tasklet`] makes a main tasklet.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        Ok(TaskletBase {
            sched: GilCell::new(sched_for_new(py)?),
            ..Self::default()
        })
    }

    /// `tasklet.__init__(func=None, args=None, kwargs=None)`, which is
    /// `self.bind(func, args, kwargs)`: the common call — a fresh tasklet bound to a callable
    /// (or None) without arguments, `bind` not overridden — natively; every other call by the
    /// Python `__init__` (its checks, its messages).
    #[pyo3(signature = (func=None, args=None, kwargs=None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        func: Option<Bound<'_, PyAny>>,
        args: Option<Bound<'_, PyAny>>,
        kwargs: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let tr = tasklet_refs(py)?;
        let common = args.is_none()
            && kwargs.is_none()
            && func.as_ref().is_none_or(Bound::is_callable)
            && {
                // unstarted (so neither current nor main) and not scheduled
                let b = slf.get();
                b.cont.is_none(py) && b.next.is_none(py)
            }
            && {
                /// The last tasklet class whose `bind` was found to be `tasklet.bind`.
                static SEEN: pystate::cast::TypeVerdict = pystate::cast::TypeVerdict::new();
                let bind = tr.bind.bind(py);
                pystate::cast::class_attr_is(&slf.get_type(), intern!(py, "bind"), bind, &SEEN)
            };
        if !common {
            tr.init_slow.call1(py, (slf, func, args, kwargs))?;
            return Ok(());
        }
        let old = {
            let b = slf.get();
            b.alive.set(py, false);
            (
                b.func.replace(py, func.map(Bound::unbind)),
                (b.args.take(py), b.kwargs.take(py)),
            )
        };
        old.0.release_now(py);
        old.1.release_now(py);
        Ok(())
    }

    /// setup(*args, **kwargs)
    ///
    /// Supply the arguments and make the tasklet runnable.
    #[pyo3(signature = (*args, **kwargs))]
    fn setup<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        {
            let b = slf.get();
            if b.alive.get(py) {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "tasklet is alive",
                ));
            }
            if b.func.is_none(py) {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "the tasklet was not bound to a function",
                ));
            }
        }
        // `_setup(args, kwargs, True)`; no keyword arguments are kept as None (`run_body`).
        let kwargs = kwargs
            .filter(|k| !k.is_empty())
            .map(|k| k.clone().into_any().unbind());
        let old = {
            let b = slf.get();
            b.alive.set(py, true);
            let args = b.args.replace(py, Some(args.clone().into_any().unbind()));
            let kwargs = b.kwargs.replace(py, kwargs);
            ((args, kwargs), b.tempval.take(py))
        };
        old.0.release_now(py);
        old.1.release_now(py);
        insert(py, slf)?;
        Ok(slf.clone())
    }

    /// `tasklet(*args, **kwargs)` is `setup(*args, **kwargs)`.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        Self::setup(slf, args, kwargs)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for f in self.object_fields() {
            f.visit(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let old = self.object_fields().map(|f| f.take(py));
        self.blocked.set(py, 0);
        for f in self.flag_fields() {
            f.set(py, false);
        }
        drop(old); // N3: every field is cleared before any finalizer runs
    }
}

/// Fields of a channel, and its hot methods (the base of `stackless.channel` on CPython).
/// Frozen, as [`TaskletBase`].
#[pyclass(
    subclass,
    weakref,
    frozen,
    module = "continulet._native",
    name = "ChannelBase"
)]
pub(crate) struct ChannelBase {
    #[pyo3(get, name = "_next")]
    next: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_prev")]
    prev: GilCell<Option<Obj>>,
    #[pyo3(get, name = "_balance")]
    balance: GilCell<i64>,
    #[pyo3(get, name = "_closing")]
    closing: GilCell<bool>,
    #[pyo3(get, name = "_preference")]
    preference: GilCell<i64>,
    #[pyo3(get, name = "_schedule_all")]
    schedule_all: GilCell<i64>,
}

#[pymethods]
impl ChannelBase {
    #[setter(_next)]
    fn set_next(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.next, value);
    }

    #[setter(_prev)]
    fn set_prev(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.prev, value);
    }

    #[setter(_balance)]
    fn set_balance(&self, py: Python<'_>, value: i64) {
        self.balance.set(py, value);
    }

    #[setter(_closing)]
    fn set_closing(&self, py: Python<'_>, value: bool) {
        self.closing.set(py, value);
    }

    #[setter(_preference)]
    fn set_preference(&self, py: Python<'_>, value: i64) {
        self.preference.set(py, value);
    }

    #[setter(_schedule_all)]
    fn set_schedule_all(&self, py: Python<'_>, value: i64) {
        self.schedule_all.set(py, value);
    }

    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        ChannelBase {
            next: GilCell::new(None),
            prev: GilCell::new(None),
            balance: GilCell::new(0),
            closing: GilCell::new(false),
            preference: GilCell::new(-1),
            schedule_all: GilCell::new(0),
        }
    }

    /// Send a value; blocks until a receiver takes it.
    fn send(slf: &Bound<'_, Self>, value: Obj) -> PyResult<Obj> {
        crate::deliver(channel_action(slf, value, Dir::Send, None))
    }

    /// Receive a value; blocks until a sender provides one.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Obj> {
        crate::deliver(channel_action(slf, slf.py().None(), Dir::Receive, None))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.next.visit(&visit)?;
        self.prev.visit(&visit)
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let old = (self.next.take(py), self.prev.take(py));
        drop(old); // N3: both cleared before any finalizer runs
    }
}

/// Per-thread scheduler fields (the base of `_core._Sched` on CPython).  Frozen, as
/// [`TaskletBase`].
#[pyclass(subclass, frozen, module = "continulet._native", name = "SchedBase")]
#[derive(Default)]
pub(crate) struct SchedBase {
    #[pyo3(get)]
    chain: GilCell<Option<Obj>>,
    #[pyo3(get)]
    current: GilCell<Option<Obj>>,
    #[pyo3(get)]
    main: GilCell<Option<Obj>>,
    #[pyo3(get)]
    runcount: GilCell<i64>,
    #[pyo3(get)]
    switch_trap: GilCell<i64>,
    #[pyo3(get)]
    schedlock: GilCell<bool>,
    /// `run(timeout)`'s instruction budget and run flags (Python: `ticks`, `watermark`,
    /// `interval`, `runflags`).
    budget: GilCell<Budget>,
    #[pyo3(get)]
    tracing: GilCell<bool>,
    /// Tasklets that became garbage alive wait in `doomed` for a kill (`_core._finalize`):
    /// the fast paths leave the operation to the Python core, which kills them first.
    #[pyo3(get)]
    doomed_waiting: GilCell<bool>,
    /// The thread's factory continulet, which creates tasklets' continulets (`_core._Sched`).
    #[pyo3(get)]
    factory: GilCell<Option<Obj>>,
    /// A request to the factory (a tasklet) and its reply (a continulet or an exception).
    #[pyo3(get)]
    factory_io: GilCell<Option<Obj>>,
}

impl SchedBase {
    /// Its fields holding any object.
    fn object_fields(&self) -> [&GilCell<Option<Obj>>; 5] {
        [
            &self.chain,
            &self.current,
            &self.main,
            &self.factory,
            &self.factory_io,
        ]
    }

    /// `f` on its budget (a copy, stored back).
    fn with_budget<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Budget) -> R) -> R {
        let mut budget = self.budget.get(py);
        let r = f(&mut budget);
        self.budget.set(py, budget);
        r
    }
}

#[pymethods]
impl SchedBase {
    #[getter]
    fn ticks(&self, py: Python<'_>) -> u64 {
        self.budget.get(py).ticks
    }

    #[setter]
    fn set_ticks(&self, py: Python<'_>, value: u64) {
        self.with_budget(py, |b| b.ticks = value);
    }

    #[getter]
    fn watermark(&self, py: Python<'_>) -> u64 {
        self.budget.get(py).watermark
    }

    #[setter]
    fn set_watermark(&self, py: Python<'_>, value: u64) {
        self.with_budget(py, |b| b.watermark = value);
    }

    #[getter]
    fn interval(&self, py: Python<'_>) -> u64 {
        self.budget.get(py).interval
    }

    #[setter]
    fn set_interval(&self, py: Python<'_>, value: u64) {
        self.with_budget(py, |b| b.interval = value);
    }

    #[getter]
    fn runflags(&self, py: Python<'_>) -> u32 {
        self.budget.get(py).flags.0
    }

    #[setter]
    fn set_runflags(&self, py: Python<'_>, value: u32) {
        self.with_budget(py, |b| b.flags = Flags(value));
    }

    #[setter(chain)]
    fn set_chain(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.chain, value);
    }

    #[setter(current)]
    fn set_current(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.current, value);
    }

    #[setter(main)]
    fn set_main(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.main, value);
    }

    #[setter(factory)]
    fn set_factory(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.factory, value);
    }

    #[setter(factory_io)]
    fn set_factory_io(&self, py: Python<'_>, value: Obj) {
        crate::fields::set_cell(py, &self.factory_io, value);
    }

    #[setter(runcount)]
    fn set_runcount(&self, py: Python<'_>, value: i64) {
        self.runcount.set(py, value);
    }

    #[setter(switch_trap)]
    fn set_switch_trap(&self, py: Python<'_>, value: i64) {
        self.switch_trap.set(py, value);
    }

    #[setter(schedlock)]
    fn set_schedlock(&self, py: Python<'_>, value: bool) {
        self.schedlock.set(py, value);
    }

    #[setter(tracing)]
    fn set_tracing(&self, py: Python<'_>, value: bool) {
        self.tracing.set(py, value);
    }

    #[setter(doomed_waiting)]
    fn set_doomed_waiting(&self, py: Python<'_>, value: bool) {
        self.doomed_waiting.set(py, value);
    }

    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        SCHEDULERS.fetch_add(1, Ordering::Relaxed);
        Self::default()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for f in self.object_fields() {
            f.visit(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let old = self.object_fields().map(|f| f.take(py));
        drop(old); // N3: every field is cleared before any finalizer runs
    }
}

impl Drop for SchedBase {
    fn drop(&mut self) {
        SCHEDULERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `_core.hooks` on CPython: the schedule, channel and error callbacks, readable from Rust
/// without a dict lookup (`active`: a schedule or channel callback is installed).
#[pyclass(frozen, module = "continulet._native", name = "Hooks")]
#[derive(Default)]
pub(crate) struct Hooks {
    schedule: GilCell<Option<Obj>>,
    channel: GilCell<Option<Obj>>,
    error: GilCell<Option<Obj>>,
    active: GilCell<bool>,
}

impl Hooks {
    fn slot(&self, name: &str) -> PyResult<&GilCell<Option<Obj>>> {
        match name {
            "schedule" => Ok(&self.schedule),
            "channel" => Ok(&self.channel),
            "error" => Ok(&self.error),
            _ => Err(pyo3::exceptions::PyKeyError::new_err(name.to_owned())),
        }
    }

    fn get_hook(&self, py: Python<'_>, name: &str) -> PyResult<Option<Obj>> {
        Ok(self.slot(name)?.cloned(py))
    }
}

#[pymethods]
impl Hooks {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    fn __getitem__(&self, py: Python<'_>, name: &str) -> PyResult<Obj> {
        Ok(self.get_hook(py, name)?.unwrap_or_else(|| py.None()))
    }

    fn __setitem__(&self, py: Python<'_>, name: &str, value: Obj) -> PyResult<()> {
        let value = (!value.is_none(py)).then_some(value);
        let old = self.slot(name)?.replace(py, value);
        let active = self.schedule.is_some(py) || self.channel.is_some(py);
        self.active.set(py, active);
        drop(old); // N3: after the store
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for cell in [&self.schedule, &self.channel, &self.error] {
            cell.visit(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let py = pystate::attached(); // (tp_clear: called by the collector, attached)
        let old = [&self.schedule, &self.channel, &self.error].map(|cell| cell.take(py));
        self.active.set(py, false);
        drop(old); // N3: every hook is cleared before any finalizer runs
    }
}

// ---- links: the rings of stackless-core over the pyclass fields ----------------------------

/// [`Links`] over tasklet and channel objects.
struct PyLinks<'py>(Python<'py>);

enum Which {
    Next,
    Prev,
}

/// A queue node: a tasklet, or a channel (the sentinel of its queue of blocked tasklets).
enum Node<'a, 'py> {
    Tasklet(&'a Bound<'py, TaskletBase>),
    Channel(&'a Bound<'py, ChannelBase>),
    Neither,
}

/// What `n` is (the remembered subclasses first: no MRO walk for the common classes).
fn node<'a, 'py>(n: &'a Bound<'py, PyAny>) -> Node<'a, 'py> {
    if let Some(t) = TASKLET.known(n) {
        Node::Tasklet(t)
    } else if let Some(c) = CHANNEL.known(n) {
        Node::Channel(c)
    } else if let Some(t) = TASKLET.cast(n) {
        Node::Tasklet(t)
    } else if let Some(c) = CHANNEL.cast(n) {
        Node::Channel(c)
    } else {
        Node::Neither
    }
}

/// A link field of a queue node.
type LinkCell = GilCell<Option<Obj>>;

/// The `(next, prev)` link fields of `n`, `None` if it is no node.
fn link_cells<'a>(n: &'a Bound<'_, PyAny>) -> Option<(&'a LinkCell, &'a LinkCell)> {
    match node(n) {
        Node::Tasklet(t) => {
            let b = t.get();
            Some((&b.next, &b.prev))
        }
        Node::Channel(c) => {
            let b = c.get();
            Some((&b.next, &b.prev))
        }
        Node::Neither => None,
    }
}

fn get_link<'py>(
    py: Python<'py>,
    n: &Bound<'py, PyAny>,
    which: &Which,
) -> Option<Bound<'py, PyAny>> {
    let (next, prev) = link_cells(n)?;
    match which {
        Which::Next => next.bound(py),
        Which::Prev => prev.bound(py),
    }
}

fn set_link(n: &Bound<'_, PyAny>, which: &Which, to: Option<Bound<'_, PyAny>>) {
    let py = n.py();
    let Some((next, prev)) = link_cells(n) else {
        return;
    };
    let cell = match which {
        Which::Next => next,
        Which::Prev => prev,
    };
    // N3: the old value is dropped after the store.
    cell.replace(py, to.map(Bound::unbind)).release_now(py);
}

impl<'py> Links for PyLinks<'py> {
    type Node = Bound<'py, PyAny>;
    fn same(&self, a: &Self::Node, b: &Self::Node) -> bool {
        a.is(b)
    }
    fn next(&self, n: &Self::Node) -> Option<Self::Node> {
        get_link(self.0, n, &Which::Next)
    }
    fn prev(&self, n: &Self::Node) -> Option<Self::Node> {
        get_link(self.0, n, &Which::Prev)
    }
    fn set_next(&mut self, n: &Self::Node, to: Option<Self::Node>) {
        set_link(n, &Which::Next, to);
    }
    fn set_prev(&mut self, n: &Self::Node, to: Option<Self::Node>) {
        set_link(n, &Which::Prev, to);
    }
    fn links(&self, n: &Self::Node) -> (Option<Self::Node>, Option<Self::Node>) {
        let py = self.0;
        link_cells(n).map_or((None, None), |(next, prev)| {
            (next.bound(py), prev.bound(py))
        })
    }
    fn set_links(&mut self, n: &Self::Node, next: Option<Self::Node>, prev: Option<Self::Node>) {
        let py = self.0;
        let Some((n_next, n_prev)) = link_cells(n) else {
            return;
        };
        // N3: the old values are dropped after both stores.
        let old = (
            n_next.replace(py, next.map(Bound::unbind)),
            n_prev.replace(py, prev.map(Bound::unbind)),
        );
        old.release_now(py);
    }
}

/// The run queue of `s`: its head taken out, operated on, and put back with the count.
fn with_queue<'py, R>(
    s: &Bound<'py, SchedBase>,
    f: impl FnOnce(&mut PyLinks<'py>, &mut Option<Bound<'py, PyAny>>) -> (R, i64),
) -> R {
    let py = s.py();
    let b = s.get();
    let mut head = b.chain.bound(py);
    let (r, delta) = f(&mut PyLinks(py), &mut head);
    b.runcount.set(py, b.runcount.get(py) + delta);
    let old = b.chain.replace(py, head.map(Bound::unbind));
    old.release_now(py);
    r
}

fn is_linked(t: &Bound<'_, TaskletBase>) -> bool {
    t.get().next.is_some(t.py())
}

/// `_core.chan_remove`: unlink a blocked tasklet from its channel.
fn chan_remove(t: &Bound<'_, TaskletBase>) -> PyResult<()> {
    let py = t.py();
    let (ch, d) = {
        let b = t.get();
        (b.chan.take(py), b.blocked.replace(py, 0))
    };
    let ch = ch.ok_or_else(|| {
        pyo3::exceptions::PySystemError::new_err("blocked tasklet without channel")
    })?;
    ring::unlink(&mut PyLinks(py), t.as_any());
    let ch = ch.into_bound(py);
    let ch = CHANNEL.cast(&ch).ok_or_else(|| {
        pyo3::exceptions::PyTypeError::new_err("tasklet blocked on a non-channel")
    })?;
    let balance = &ch.get().balance;
    balance.set(py, balance.get(py) - d);
    Ok(())
}

/// N1: `_core._lock`, taken only when more than one thread has a scheduler.
struct CoreLock<'a> {
    py: Python<'a>,
    release: Option<&'a Obj>,
}

impl<'a> CoreLock<'a> {
    fn acquire(py: Python<'a>, r: &'a CoreRefs) -> PyResult<Self> {
        if SCHEDULERS.load(Ordering::Relaxed) <= 1 {
            return Ok(CoreLock { py, release: None });
        }
        r.lock_acquire.call0(py)?;
        Ok(CoreLock {
            py,
            release: Some(&r.lock_release),
        })
    }
}

impl Drop for CoreLock<'_> {
    fn drop(&mut self) {
        if let Some(rel) = self.release {
            if let Err(e) = rel.call0(self.py) {
                e.write_unraisable(self.py, None);
            }
        }
    }
}

// ---- the fast paths -----------------------------------------------------------------------

thread_local! {
    /// How many fast-path steps of this thread are under way (N5).
    static BUSY: Cell<u32> = const { Cell::new(0) };
}

/// **N5** Between its first change of a queue, a tasklet or the scheduler and its switch, a
/// fast path runs Python code only where it releases a replaced value (a finalizer) or makes
/// an object (the collector may run): there it holds a [`Busy`] ([`release_in_step`],
/// [`cont_of`]; and all of the cold [`channel_undo`]), so that such code sees `core_busy()`
/// and does not call the scheduler (`_core._finalize` defers its kill).  Other releases there
/// drop references to objects the step still holds (tasklets, links), which run nothing.
struct Busy;

impl Busy {
    fn enter() -> Busy {
        BUSY.with(|b| b.set(b.get() + 1));
        Busy
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(b.get() - 1));
    }
}

/// Release `old` (a replaced value) in the middle of a fast-path step (N5).
fn release_in_step(py: Python<'_>, old: Option<Obj>) {
    if let Some(old) = old {
        let _busy = Busy::enter();
        drop(old.into_bound(py));
    }
}

/// Whether a native fast path of this thread is between two states (N5).
#[pyfunction]
fn core_busy() -> bool {
    BUSY.with(|b| b.get() != 0)
}

fn current_sched<'py>(py: Python<'py>, r: &CoreRefs) -> PyResult<Bound<'py, SchedBase>> {
    if let Some(s) = SCHED.with(|c| c.borrow().as_ref().map(|s| s.clone_ref(py))) {
        return Ok(s.into_bound(py));
    }
    let s = r.get.bind(py).call0()?.cast_into::<SchedBase>()?;
    SCHED.with(|c| *c.borrow_mut() = Some(s.clone().unbind()));
    Ok(s)
}

/// No callback installed, no switch trap, no preemption running: the fast paths apply.
/// Returns the running tasklet then.
fn plain<'py>(
    py: Python<'py>,
    r: &CoreRefs,
    s: &Bound<'py, SchedBase>,
) -> Option<Bound<'py, TaskletBase>> {
    let cur = {
        let b = s.get();
        if b.switch_trap.get(py) != 0
            || b.tracing.get(py)
            || b.doomed_waiting.get(py)
            || b.budget.get(py).flags.has(Flags::SOFT)
        {
            return None;
        }
        as_tasklet(b.current.bound(py))
    };
    if r.hooks.get().active.get(py) {
        return None;
    }
    cur
}

/// `s` (a tasklet's `_sched`) as a scheduler (the remembered subclass first), or the cast's
/// `TypeError`.
fn as_sched(s: Bound<'_, PyAny>) -> PyResult<Bound<'_, SchedBase>> {
    match SCHED_CLASS.cast(&s) {
        Some(sched) => Ok(sched.clone()),
        None => Ok(s.cast_into::<SchedBase>()?),
    }
}

fn as_tasklet(o: Option<Bound<'_, PyAny>>) -> Option<Bound<'_, TaskletBase>> {
    o.and_then(|o| TASKLET.cast_into(o))
}

/// `_core.claim`: take the tempval; a bomb explodes.
fn claim(py: Python<'_>, r: &CoreRefs, t: &Bound<'_, TaskletBase>) -> PyResult<Obj> {
    let v = t.get().tempval.take(py);
    match v {
        None => Ok(py.None()),
        Some(v) => {
            let b = v.bind(py);
            let plain_value = b.is_none()
                || b.is_exact_instance_of::<pyo3::types::PyInt>()
                || b.is_exact_instance_of::<pyo3::types::PyString>()
                || b.is_exact_instance_of::<pyo3::types::PyFloat>()
                || b.is_exact_instance_of::<pyo3::types::PyTuple>();
            if !plain_value && is_bomb(b, r.bomb.bind(py))? {
                let exc = v.bind(py).call_method0(intern!(py, "_exception"))?;
                Err(PyErr::from_value(exc))
            } else {
                Ok(v)
            }
        }
    }
}

/// `isinstance(b, bomb)`, mostly without asking `b` for its `__class__` (see
/// `pystate::cast::isinstance_by_type`).
fn is_bomb(b: &Bound<'_, PyAny>, bomb: &Bound<'_, PyAny>) -> PyResult<bool> {
    let by_type = bomb
        .cast::<pyo3::types::PyType>()
        .ok()
        .and_then(|cls| pystate::cast::isinstance_by_type(b, cls));
    match by_type {
        Some(answer) => Ok(answer),
        None => b.is_instance(bomb),
    }
}

/// The continulet of `t`, created the way the Python core creates it.
fn cont_of(
    py: Python<'_>,
    r: &CoreRefs,
    s: &Bound<'_, SchedBase>,
    t: &Bound<'_, TaskletBase>,
) -> PyResult<Obj> {
    if let Some(c) = t.get().cont.cloned(py) {
        return Ok(c);
    }
    let _ = r;
    let _busy = Busy::enter(); // N5: a new continulet, a collection may run
    let c = new_cont(s, t.as_any())?;
    let old = t.get().cont.replace(py, Some(c.clone_ref(py)));
    drop(old); // (None: checked above, and making `c` ran no code that sets it)
    Ok(c)
}

fn set_current(s: &Bound<'_, SchedBase>, nxt: &Bound<'_, TaskletBase>) {
    let py = s.py();
    let olds = {
        let b = s.get();
        let o1 = b.current.replace(py, Some(nxt.clone().into_any().unbind()));
        let o2 = b.chain.replace(py, Some(nxt.clone().into_any().unbind()));
        b.with_budget(py, Budget::on_switch);
        (o1, o2)
    };
    olds.release_now(py);
}

/// `_core._switch` + `claim`, for a `nxt` that is in the run queue (not blocked).
///
/// Across the switch the Rust frames own one reference only, to `prev` (the tasklet that is
/// suspended): `s` and `nxt` are released before it (the thread's scheduler stays referenced
/// by this thread, N6), and `prev` is told to the collector with the switch plan's two
/// (pystate `refs`, R3) — so that a cycle through a suspended tasklet's stack is found
/// (`_core._finalize` kills the tasklet), and a tasklet of a thread that exits leaves nothing
/// behind when its stack is cleared.  `called`: where the arguments of the Python call that
/// began this step end (a channel operation's), null if unknown.
///
/// Its frame stays on the stack of the suspended tasklet: what it calls returns payloads and
/// boxed errors (two words, see [`Payload::of`]), never a `PyResult`.
fn switch_to(
    py: Python<'_>,
    r: &CoreRefs,
    s: Bound<'_, SchedBase>,
    prev: &Bound<'_, TaskletBase>,
    nxt: Bound<'_, TaskletBase>,
    called: pystate::fastcall::ArgsEnd,
) -> Payload {
    if prev.is(&nxt) {
        return Payload::of(claim(py, r, prev));
    }
    let (pc, c) = match before_switch(py, r, &s, prev, &nxt) {
        Ok(both) => both,
        Err(e) => return Payload::Exc(e),
    };
    drop((s, nxt));
    let (pc, c) = (pc.into_bound(py), c.into_bound(py)); // released without pyo3's lookup
                                                         // N3, N6: one owned reference here, `prev`'s.
    let switched = switch::switch_to_hinted(pc, c, called, prev.as_ptr());
    if matches!(switched, Payload::Exc(_)) {
        return switched;
    }
    switched.release_now(py);
    after_switch(py, r, prev)
}

#[inline(never)]
fn before_switch(
    py: Python<'_>,
    r: &CoreRefs,
    s: &Bound<'_, SchedBase>,
    prev: &Bound<'_, TaskletBase>,
    nxt: &Bound<'_, TaskletBase>,
) -> Result<(Obj, Obj), Box<PyErr>> {
    let steps = || -> PyResult<(Obj, Obj)> {
        set_current(s, nxt); // (its old values stay referenced: the caller holds `prev`)
        let c = cont_of(py, r, s, nxt)?;
        let pc = prev.get().cont.cloned(py);
        let pc = pc.ok_or_else(|| {
            pyo3::exceptions::PySystemError::new_err("running tasklet without continulet")
        })?;
        Ok((pc, c))
    };
    steps().map_err(Box::new)
}

#[inline(never)]
fn after_switch(py: Python<'_>, r: &CoreRefs, prev: &Bound<'_, TaskletBase>) -> Payload {
    let steps = || -> PyResult<Obj> {
        // `prev` runs again, so its scheduler is this thread's (N4): no thread-local lookup.
        let s = match prev
            .get()
            .sched
            .bound(py)
            .and_then(|s| SCHED_CLASS.cast_into(s))
        {
            Some(s) => s,
            None => current_sched(py, r)?,
        };
        if s.get().tracing.get(py) {
            let frame = py
                .import(intern!(py, "sys"))?
                .call_method0(intern!(py, "_getframe"))?;
            r.core
                .bind(py)
                .call_method1(intern!(py, "_retrace"), (&s, frame))?;
        }
        drop(s);
        claim(py, r, prev)
    };
    Payload::of(steps())
}

/// What a fast path decided before switching.
enum Prepared<'py> {
    /// Not the common case: call the Python core with the value.
    Delegate(Obj),
    /// Switch from `prev` to `next` (the queues are updated).
    Switch {
        s: Bound<'py, SchedBase>,
        prev: Bound<'py, TaskletBase>,
        next: Bound<'py, TaskletBase>,
    },
}

/// `_core.channel_action` (generic_channel_action) for the common case; delegates the rest.
fn channel_action(
    ch: &Bound<'_, ChannelBase>,
    arg: Obj,
    dir: Dir,
    called: Option<Called<'_, '_>>,
) -> Payload {
    let py = ch.py();
    // The switch below runs in this small frame: the preparation is not inlined, so that
    // fewer stack bytes are saved and restored per switch.
    let (r, prepared) = match channel_begin(ch, arg, dir) {
        Ok(begun) => begun,
        Err(e) => return Payload::Exc(e),
    };
    match prepared {
        Prepared::Delegate(arg) => Payload::of(delegate_channel_action(r, ch, arg, dir, called)),
        // (this arm owns the one reference to `prev` that `switch_to` tells)
        Prepared::Switch { s, prev, next } => {
            let end = called.map_or(std::ptr::null(), |c| c.end);
            let switched = switch_to(py, r, s, &prev, next, end);
            if matches!(switched, Payload::Exc(_)) {
                return channel_switch_failed(r, ch, &prev, switched);
            }
            switched
        }
    }
}

/// The checks and the preparation of [`channel_action`], out of line.
#[inline(never)]
fn channel_begin<'a, 'py>(
    ch: &Bound<'py, ChannelBase>,
    arg: Obj,
    dir: Dir,
) -> Result<(&'a CoreRefs, Prepared<'py>), Box<PyErr>> {
    let steps = || {
        crate::refuse_while_unwinding()?; // (before anything changes: N2)
        let r = refs(ch.py())?;
        Ok((r, channel_prepare(r, ch, arg, dir)?))
    };
    steps().map_err(Box::new)
}

/// The queues put back after a switch of [`channel_action`] that did not happen.
#[cold]
#[inline(never)]
fn channel_switch_failed(
    r: &CoreRefs,
    ch: &Bound<'_, ChannelBase>,
    prev: &Bound<'_, TaskletBase>,
    switched: Payload,
) -> Payload {
    let py = ch.py();
    let undo = current_sched(py, r).and_then(|s| channel_undo(r, ch, &s, prev));
    match undo {
        Ok(()) => switched,
        Err(e) => Payload::Exc(Box::new(e)),
    }
}

/// The Python core's `channel_action`, for everything but the common case.  Called from a
/// raw `receive`/`send` (`called`): with borrowed arguments, and the calling frame's stack
/// depth told to the collector while it runs (pystate `set_call_end`), so that a tasklet that
/// blocks in there (nothing else runnable but a watchdog, another thread...) shows what its
/// frames hold.
#[inline(never)]
fn delegate_channel_action(
    r: &CoreRefs,
    ch: &Bound<'_, ChannelBase>,
    arg: Obj,
    dir: Dir,
    called: Option<Called<'_, '_>>,
) -> PyResult<Obj> {
    let py = ch.py();
    let Some(called) = called else {
        return r.channel_action.call1(py, (ch, arg, dir.sign()));
    };
    // The value as the caller passed it (its argument vector keeps it alive), not a
    // reference of ours: nothing on this stack but borrowed objects while the core runs.
    drop(arg);
    let none = py.None().into_bound(py);
    let value = called.value.unwrap_or(&none);
    let sign = dir.sign().into_pyobject(py)?.into_any();
    let before = pystate::set_call_end(called.end);
    let result = pystate::call_borrowed(r.channel_action.bind(py), &[ch.as_any(), value, &sign]);
    pystate::set_call_end(before);
    result.map(Bound::unbind)
}

/// How a raw `receive`/`send` was called: where its arguments end in the calling frame's value
/// stack (if it was called by a CALL), and the value sent (borrowed from those arguments).
#[derive(Clone, Copy)]
struct Called<'a, 'py> {
    end: pystate::fastcall::ArgsEnd,
    value: Option<&'a Bound<'py, PyAny>>,
}

#[inline(never)]
fn channel_prepare<'py>(
    r: &CoreRefs,
    ch: &Bound<'py, ChannelBase>,
    arg: Obj,
    dir: Dir,
) -> PyResult<Prepared<'py>> {
    let py = ch.py();
    let s = current_sched(py, r)?;
    let Some(source) = plain(py, r, &s) else {
        return Ok(Prepared::Delegate(arg));
    };
    let lock = CoreLock::acquire(py, r)?;
    let c = ch.get();
    let (balance, preference, schedule_all, closing) = (
        c.balance.get(py),
        c.preference.get(py),
        c.schedule_all.get(py) != 0,
        c.closing.get(py),
    );
    let switchto = match channel::decide(balance, dir, preference, schedule_all) {
        Decision::Handoff(next) => {
            // (Only here: with nobody blocked the channel's ring holds only the channel, and
            // casting it as a tasklet would fail the slow way.)
            let first = as_tasklet(c.next.bound(py));
            let Some(target) = first.filter(|t| t.get().sched.holds(py, &s)) else {
                drop(lock);
                return Ok(Prepared::Delegate(arg)); // interthread: the Python core wakes it
            };
            chan_remove(&target)?;
            let theirs = target.get().tempval.replace(py, Some(arg));
            let old = source.get().tempval.replace(py, theirs);
            release_in_step(py, old);
            let t_any = target.as_any().clone();
            match next {
                Next::SourceNext => {
                    with_queue(&s, |l, h| (ring::push_back(l, h, &t_any), 1));
                    as_tasklet(source.get().next.bound(py))
                }
                Next::Target => {
                    with_queue(&s, |l, h| (ring::push_after_head(l, h, &t_any), 1));
                    Some(target)
                }
                Next::Source => {
                    with_queue(&s, |l, h| (ring::push_back(l, h, &t_any), 1));
                    Some(source.clone())
                }
            }
        }
        Decision::Block => {
            let (trap, next_is_self) = {
                let b = source.get();
                let next = &b.next;
                (
                    b.block_trap.get(py),
                    next.is_none(py) || next.holds(py, &source),
                )
            };
            if channel::check_block(trap, closing).is_err() || next_is_self {
                drop(lock);
                return Ok(Prepared::Delegate(arg)); // errors, or nothing else runnable
            }
            let src_any = source.as_any().clone();
            with_queue(&s, |l, h| (ring::remove(l, h, &src_any), -1));
            ring::insert_before(&mut PyLinks(py), ch.as_any(), &src_any);
            c.balance.set(py, c.balance.get(py) + dir.sign());
            let old = {
                let b = source.get();
                b.blocked.set(py, dir.sign());
                let old_chan = b.chan.replace(py, Some(ch.clone().into_any().unbind()));
                (old_chan, b.tempval.replace(py, Some(arg)))
            };
            drop(old.0); // (None: a running tasklet is blocked on no channel)
            release_in_step(py, old.1);
            as_tasklet(s.get().chain.bound(py))
        }
    };
    drop(lock);
    let Some(next) = switchto else {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "stackless: empty run queue after a handoff",
        ));
    };
    Ok(Prepared::Switch {
        s,
        prev: source,
        next,
    })
}

/// Undo a failed block (the switch did not happen), as the Python core does.
#[inline(never)]
fn channel_undo(
    r: &CoreRefs,
    ch: &Bound<'_, ChannelBase>,
    s: &Bound<'_, SchedBase>,
    source: &Bound<'_, TaskletBase>,
) -> PyResult<()> {
    let _busy = Busy::enter();
    let _lock = CoreLock::acquire(ch.py(), r)?;
    let blocked_here = source.get().chan.holds(ch.py(), ch);
    if blocked_here {
        chan_remove(source)?;
    }
    if !is_linked(source) {
        let src_any = source.as_any().clone();
        with_queue(s, |l, h| (ring::unremove(l, h, &src_any), 1));
    }
    Ok(())
}

/// `stackless.schedule(retval=stackless.current)`: the next runnable tasklet runs; returns
/// `retval` when this one runs again.  Its common calls, `schedule()` and `schedule(retval)`,
/// come through the raw function [`schedule_raw`]; this one takes the others (a keyword
/// `retval`, and the errors).
#[pyfunction]
#[pyo3(signature = (*args, **kwargs))]
pub(crate) fn schedule(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Obj> {
    let retval = schedule_retval(args, kwargs)?;
    crate::deliver(schedule_with(py, retval, std::ptr::null()))
}

/// `schedule()` / `schedule(retval)` as a raw function (`pystate::fastcall`, A1: `module` is
/// the extension module), knowing where the caller's arguments end (`end`), so that a
/// tasklet suspended in it shows its calling frame's whole value stack (pystate `refs`, R2).
fn schedule_raw<'py>(
    module: &Bound<'py, PyAny>,
    retval: Option<&Bound<'py, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    schedule_with(module.py(), retval.map(|v| v.clone().unbind()), end)
}

/// `schedule` with its `retval` (None: not given, the current tasklet).  Its frame stays on
/// the stack of the suspended tasklet: only calls here.
fn schedule_with(py: Python<'_>, retval: Option<Obj>, end: pystate::fastcall::ArgsEnd) -> Payload {
    if let Err(e) = crate::refuse_while_unwinding() {
        return Payload::from_err(e); // (before anything changes: N2)
    }
    let r = match refs(py) {
        Ok(r) => r,
        Err(e) => return Payload::from_err(e),
    };
    match schedule_prepare(py, r, retval) {
        Err(e) => Payload::from_err(e),
        Ok((Prepared::Delegate(retval), s)) => {
            Payload::of(r.schedule.call1(py, (s, retval, false)))
        }
        Ok((Prepared::Switch { s, prev, next }, same)) => {
            drop(same);
            // (its identity only: no reference of ours across the switch, N3)
            let retval = prev.get().tempval.ptr(py);
            let result = switch_to(py, r, s, &prev, next, end);
            if matches!(result, Payload::Exc(_)) {
                undo_schedule_tempval(&prev, retval);
            }
            result
        }
    }
}

/// As the Python core after a failed `schedule` switch: restore the old tempval (None,
/// checked before); a failed switch ran no code, so the tempval is still the one we set.
#[cold]
#[inline(never)]
fn undo_schedule_tempval(prev: &Bound<'_, TaskletBase>, retval: Option<*mut pyo3::ffi::PyObject>) {
    let py = prev.py();
    let mine = prev.get().tempval.ptr(py);
    if mine.is_some() && mine == retval {
        let t = prev.get().tempval.take(py);
        drop(t);
    }
}

/// `retval` of `schedule(retval=<missing>)` (positional or by keyword, as the pure core's
/// `def` and C Stackless take it), with the `def`'s errors.
fn schedule_retval(
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<Option<Obj>> {
    let type_error = |msg: String| pyo3::exceptions::PyTypeError::new_err(msg);
    if args.len() > 1 {
        return Err(type_error(format!(
            "schedule() takes from 0 to 1 positional arguments but {} were given",
            args.len()
        )));
    }
    // (not `get_item(0).ok()`: an IndexError made and dropped costs ~400 instructions)
    let mut retval = (!args.is_empty())
        .then(|| args.get_item(0).map(Bound::unbind))
        .transpose()?;
    for (k, v) in kwargs.into_iter().flatten() {
        let name = k.str()?;
        if name.to_str()? != "retval" {
            return Err(type_error(format!(
                "schedule() got an unexpected keyword argument '{name}'"
            )));
        }
        if retval.is_some() {
            return Err(type_error(
                "schedule() got multiple values for argument 'retval'".to_owned(),
            ));
        }
        retval = Some(v.unbind());
    }
    Ok(retval)
}

#[inline(never)]
fn schedule_prepare<'py>(
    py: Python<'py>,
    r: &CoreRefs,
    retval: Option<Obj>,
) -> PyResult<(Prepared<'py>, Bound<'py, SchedBase>)> {
    let s = current_sched(py, r)?;
    let retval = match retval {
        Some(v) => v,
        None => s.get().current.cloned(py).unwrap_or_else(|| py.None()),
    };
    let Some(prev) = plain(py, r, &s) else {
        return Ok((Prepared::Delegate(retval), s));
    };
    let lock = CoreLock::acquire(py, r)?;
    let (next, old) = {
        let b = prev.get();
        let next = as_tasklet(b.next.bound(py));
        if next.is_none() || b.tempval.is_some(py) {
            // nothing to switch to, or a value already waiting: the Python core's rules
            drop(next);
            drop(lock);
            return Ok((Prepared::Delegate(retval), s));
        }
        (next, b.tempval.replace(py, Some(retval)))
    };
    drop(lock);
    release_in_step(py, old);
    let next = next.expect("checked above");
    Ok((
        Prepared::Switch {
            s: s.clone(),
            prev,
            next,
        },
        s,
    ))
}

/// The bottom of every tasklet (`_core._tasklet_main`): run the function, then hand the stack
/// to the next tasklet.
#[pyfunction]
pub(crate) fn tasklet_main(cont: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> PyResult<Obj> {
    crate::deliver(tasklet_body(cont, t))
}

/// [`tasklet_main`], as the native body of a tasklet's continulet.  Its frame and
/// `run_body`'s stay on the tasklet's stack while its function runs (saved and copied with
/// each of its switches): only calls here, returning two words each (see `Payload::of`).
pub(crate) fn tasklet_body(cont: &Bound<'_, PyAny>, t: &Bound<'_, PyAny>) -> Payload {
    let (r, tb) = match tasklet_of(t) {
        Ok(found) => found,
        Err(e) => return Payload::Exc(e),
    };
    let ran = run_body(t.py(), r, tb);
    tasklet_finish(r, tb, cont, ran)
}

/// The scheduler's references and the tasklet (out of line, errors boxed).
#[inline(never)]
fn tasklet_of<'a, 'py>(
    t: &'a Bound<'py, PyAny>,
) -> Result<(&'a CoreRefs, &'a Bound<'py, TaskletBase>), Box<PyErr>> {
    let r = refs(t.py()).map_err(Box::new)?;
    let tb = t
        .cast::<TaskletBase>()
        .map_err(|e| Box::new(PyErr::from(e)))?;
    Ok((r, tb))
}

/// After the tasklet's function: its error handled, the stack handed to the next tasklet.
#[inline(never)]
fn tasklet_finish(
    r: &CoreRefs,
    tb: &Bound<'_, TaskletBase>,
    cont: &Bound<'_, PyAny>,
    ran: Result<(), Box<PyErr>>,
) -> Payload {
    let py = tb.py();
    let end = (|| {
        let err = match ran {
            Ok(()) => None,
            Err(e) if e.is_instance(py, r.tasklet_exit.bind(py)) => None,
            Err(e) => uncaught(py, r, &e)?,
        };
        tasklet_end(py, r, tb, cont, err)?;
        Ok(py.None())
    })();
    Payload::of(end)
}

/// The tasklet's function, called.  Not inlined (nor are `uncaught` and `tasklet_end`): what
/// it and `tasklet_body` keep on the C stack while the function runs is saved and copied with
/// every switch of the tasklet; the error is boxed (one word).
#[inline(never)]
fn run_body(py: Python<'_>, r: &CoreRefs, t: &Bound<'_, TaskletBase>) -> Result<(), Box<PyErr>> {
    let (func, args, kwargs) = body_call(py, r, t)?;
    // R3 (pystate `refs`): while the function runs, this context's C stack owns one reference
    // to each of these — the tasklet (the native body's argument, held by `Host::run_started`),
    // the function, its argument tuple and keywords (here) — and nothing else but what the
    // switch that suspends it records (the call borrows the arguments and keyword values).
    // Told to the collector, so that a cycle through the tasklet's stack is found; forgotten
    // before they are released.
    let kw_ptr = kwargs.as_ref().map_or(std::ptr::null_mut(), Bound::as_ptr);
    let record = pystate::StartRecord::current();
    record.set([t.as_ptr(), func.as_ptr(), args.as_ptr(), kw_ptr]);
    let result = match &kwargs {
        None => pystate::call(func.bind(py), &args, None).into_payload(py),
        Some(kw) => call_with_keywords(func.bind(py), &args, kw),
    };
    record.set(pystate::START_HELD_NONE);
    match result {
        Payload::Value(_) => Ok(()),
        Payload::Exc(e) => Err(e),
    }
}

/// What [`run_body`] calls: the function, its arguments and keywords (a copy of our own:
/// nothing can change it while the function runs, so the call can borrow its values).
#[inline(never)]
#[allow(clippy::type_complexity)]
fn body_call<'py>(
    py: Python<'py>,
    r: &CoreRefs,
    t: &Bound<'py, TaskletBase>,
) -> Result<(Obj, Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>), Box<PyErr>> {
    let steps = || -> PyResult<_> {
        claim(py, r, t)?;
        let (func, args, kwargs) = {
            let b = t.get();
            (
                b.func.cloned(py).unwrap_or_else(|| py.None()),
                b.args.take(py),
                b.kwargs.take(py),
            )
        };
        let args = match args {
            Some(a) => a.into_bound(py).cast_into::<PyTuple>()?,
            None => PyTuple::empty(py),
        };
        // Keywords: a copy of our own (nothing can change it while the function runs, so the
        // call can borrow its values); the original goes now (its values are in the copy).
        let kwargs = match kwargs {
            Some(k) => {
                let k = k.into_bound(py).cast_into::<PyDict>()?;
                if k.is_empty() {
                    None
                } else {
                    Some(k.copy()?)
                }
            }
            None => None,
        };
        Ok((func, args, kwargs))
    };
    steps().map_err(Box::new)
}

/// A tasklet's function called with keywords, borrowed from `kw` (ours alone).  Out of line:
/// its temporaries stay out of `run_body`'s frame, saved with every switch of the tasklet.
#[inline(never)]
fn call_with_keywords<'py>(
    f: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kw: &Bound<'py, PyDict>,
) -> Payload {
    let result = pystate::call_kw_borrowed(f, args, kw).unwrap_or_else(|| f.call(args, Some(kw)));
    Payload::of(result.map(Bound::unbind))
}

/// An exception escaped the tasklet: the error handler, or a bomb for the watchdog.
#[inline(never)]
#[cold]
fn uncaught(py: Python<'_>, r: &CoreRefs, e: &PyErr) -> PyResult<Option<Obj>> {
    let to_bomb = |e: &PyErr| -> PyResult<Obj> {
        let tb = e
            .traceback(py)
            .map_or_else(|| py.None(), |t| t.into_any().unbind());
        r.bomb.call1(py, (e.get_type(py), e.value(py), tb))
    };
    let handler = r.hooks.get().get_hook(py, "error")?;
    if let Some(h) = handler.map(|h| h.into_bound(py)) {
        if !e.is_instance(py, r.system_exit.bind(py)) {
            let tb = e
                .traceback(py)
                .map_or_else(|| py.None(), |t| t.into_any().unbind());
            return match h.call1((e.get_type(py), e.value(py), tb)) {
                Ok(_) => Ok(None),
                Err(e2) => Ok(Some(to_bomb(&e2)?)),
            };
        }
    }
    Ok(Some(to_bomb(e)?))
}

/// `_core._tasklet_end` for the common case (another tasklet is runnable, no error, no
/// callback); delegates the rest.
#[inline(never)]
fn tasklet_end(
    py: Python<'_>,
    r: &CoreRefs,
    t: &Bound<'_, TaskletBase>,
    cont: &Bound<'_, PyAny>,
    err: Option<Obj>,
) -> PyResult<()> {
    let s = t.get().sched.bound(py);
    let Some(s_any) = s else {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "tasklet without scheduler",
        ));
    };
    let s = as_sched(s_any)?;
    let fast = err.is_none() && plain(py, r, &s).is_some() && {
        let next = &t.get().next;
        s.get().chain.holds(py, t) && next.is_some(py) && !next.holds(py, t)
    };
    if !fast {
        let err = err.unwrap_or_else(|| py.None());
        r.tasklet_end.call1(py, (&s, t, cont, err))?;
        return Ok(());
    }
    let lock = CoreLock::acquire(py, r)?;
    t.get().alive.set(py, false);
    let t_any = t.as_any().clone();
    with_queue(&s, |l, h| (ring::remove(l, h, &t_any), -1));
    let Some(nxt) = as_tasklet(s.get().chain.bound(py)) else {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "stackless: empty run queue at tasklet end",
        ));
    };
    drop(lock);
    set_current(&s, &nxt);
    let nc = cont_of(py, r, &s, &nxt)?;
    let own = t.get().cont.take(py);
    drop(own);
    switch::permute2(cont, nc.bind(py))
}

/// What the native `tasklet.__init__` needs from `stackless` (set by [`tasklet_native_init`]).
struct TaskletRefs {
    /// The Python `tasklet.__init__`, for every call but the common one.
    init_slow: Obj,
    /// `tasklet.bind` (a subclass overriding it gets the Python `__init__`).
    bind: Obj,
}

static TASKLET_REFS: PyOnceLock<TaskletRefs> = PyOnceLock::new();

fn tasklet_refs(py: Python<'_>) -> PyResult<&'static TaskletRefs> {
    TASKLET_REFS.get(py).ok_or_else(|| {
        pyo3::exceptions::PyRuntimeError::new_err("stackless.tasklet not initialized")
    })
}

/// Hand `stackless.tasklet`'s `__init__` and `bind` to the native `__init__` (called once by
/// `stackless`, which then removes its Python `__new__`, `__init__`, `setup`, `__call__`).
#[pyfunction]
fn tasklet_native_init(cls: &Bound<'_, pyo3::types::PyType>) -> PyResult<()> {
    let py = cls.py();
    let tr = TaskletRefs {
        init_slow: cls.getattr("__dict__")?.get_item("__init__")?.unbind(),
        bind: cls.getattr("bind")?.unbind(),
    };
    let _ = TASKLET_REFS.set(py, tr);
    pystate::finalize::set_finalizer::<TaskletFinalizer>(cls);
    Ok(())
}

/// The finalizer of `stackless.tasklet` (PEP 442; subclasses inherit it): nothing to do for a
/// tasklet that is dead or never ran — most of them, without a Python call — else
/// `_core._finalize` (Stackless kills it with `TaskletExit`).
struct TaskletFinalizer;

impl pystate::finalize::Finalize for TaskletFinalizer {
    fn finalize(obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = obj.py();
        if let Some(t) = TASKLET.cast(obj) {
            let b = t.get();
            if !b.alive.get(py) || b.cont.is_none(py) {
                return Ok(());
            }
        }
        refs(py)?.finalize.call1(py, (obj, 1))?;
        Ok(())
    }
}

thread_local! {
    /// N4: set while [`bare_tasklet`] makes a scheduler's main tasklet (no scheduler yet).
    static BARE: Cell<bool> = const { Cell::new(false) };
}

/// `TaskletBase.__new__(cls)` without a scheduler: the main tasklet of a scheduler being
/// made (`_core._Sched.__init__`), which would otherwise ask for the scheduler it is part of.
#[pyfunction]
fn bare_tasklet<'py>(cls: &Bound<'py, pyo3::types::PyType>) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    BARE.with(|b| b.set(true));
    let t = py
        .get_type::<TaskletBase>()
        .call_method1(intern!(py, "__new__"), (cls,));
    BARE.with(|b| b.set(false));
    t
}

/// `_core.init_fields` for a fresh tasklet (`TaskletBase.__new__` set the defaults).
#[pyfunction]
fn init_fields(t: &Bound<'_, TaskletBase>, s: Obj) {
    let old = t.get().sched.replace(t.py(), Some(s));
    drop(old); // N3: after the store
}

/// `_core._new_cont` natively: the continulet of tasklet `t`, created inside the thread's
/// factory continulet (at its shallow depth), with the same request/reply protocol through
/// `s.factory_io` as the Python core (whose other paths call this one in native mode).
#[pyfunction]
fn new_cont(s: &Bound<'_, SchedBase>, t: &Bound<'_, PyAny>) -> PyResult<Obj> {
    let py = s.py();
    crate::fields::set_cell(py, &s.get().factory_io, t.clone().unbind());
    let factory = s.get().factory.bound(py);
    let factory = factory.ok_or_else(|| {
        pyo3::exceptions::PySystemError::new_err("stackless: a scheduler without its factory")
    })?;
    switch::switch_self(&factory)?; // (N3: no borrow alive)
    drop(factory);
    let reply = s.get().factory_io.take(py);
    let reply = reply.map_or_else(|| py.None().into_bound(py), |r| r.into_bound(py));
    if reply.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        return Err(PyErr::from_value(reply));
    }
    Ok(reply.unbind())
}

/// `_core._factory_main` natively: the body of the thread's factory continulet.  Each request
/// (a tasklet in `s.factory_io`) is answered with its continulet, whose body is
/// [`tasklet_main`] run natively (no Python frame below the tasklet's function), or with the
/// exception that creating it raised.  Nothing of a request stays referenced on this
/// suspended stack.
#[pyfunction]
fn factory_main(fc: &Bound<'_, PyAny>, s: &Bound<'_, SchedBase>) -> PyResult<Obj> {
    loop {
        switch::switch_self(fc)?;
        answer_factory_request(s);
    }
}

/// One request of [`factory_main`] (its own frame, so that nothing of it stays on the
/// factory's suspended stack).
#[inline(never)]
fn answer_factory_request(s: &Bound<'_, SchedBase>) {
    let py = s.py();
    let t = s.get().factory_io.bound(py);
    let t = t.unwrap_or_else(|| py.None().into_bound(py));
    let reply = match crate::new_native(&t, |c, t| tasklet_body(c.as_any(), t)) {
        Ok(c) => c.into_any(),
        Err(e) => e.into_value(py).into_bound(py).into_any(),
    };
    crate::fields::set_cell(py, &s.get().factory_io, reply.unbind());
}

/// `_core.insert`: append `t` to its scheduler's run queue (no-op if it is linked).  With
/// one scheduler natively; with several, the Python core's (lock, wake the other thread).
#[pyfunction]
fn insert(py: Python<'_>, t: &Bound<'_, TaskletBase>) -> PyResult<()> {
    let r = refs(py)?;
    if SCHEDULERS.load(Ordering::Relaxed) > 1 {
        r.insert.call1(py, (t,))?;
        return Ok(());
    }
    let s = t.get().sched.cloned(py);
    let Some(s) = s else {
        r.insert.call1(py, (t,))?;
        return Ok(());
    };
    if !is_linked(t) {
        let s = as_sched(s.into_bound(py))?;
        let t_any = t.as_any().clone();
        with_queue(&s, |l, h| (ring::push_back(l, h, &t_any), 1));
    }
    Ok(())
}

/// Connect the native core to `stackless._core` (called once, at the end of its import).
#[pyfunction]
fn stackless_init(core: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = core.py();
    let get = |name: &str| -> PyResult<Obj> { Ok(core.getattr(name)?.unbind()) };
    let lock = core.getattr("_lock")?;
    let refs = CoreRefs {
        core: core.clone().unbind(),
        get: get("get")?,
        hooks: core.getattr("hooks")?.cast_into::<Hooks>()?.unbind(),
        bomb: get("bomb")?,
        tasklet_exit: get("TaskletExit")?,
        system_exit: py
            .get_type::<pyo3::exceptions::PySystemExit>()
            .into_any()
            .unbind(),
        channel_action: get("channel_action")?,
        schedule: get("schedule")?,
        tasklet_end: get("_tasklet_end")?,
        insert: get("insert")?,
        lock_acquire: lock.getattr("acquire")?.unbind(),
        lock_release: lock.getattr("release")?.unbind(),
        tick_expired: get("_tick_expired")?,
        finalize: get("_finalize")?,
        our_globals: get("_OUR_GLOBALS")?,
    };
    let _ = REFS.set(py, refs);
    Ok(())
}

/// The preemption budget of `run(timeout)`, counted natively: the opcode tracer of
/// `_core._make_tracers`, without a Python call per instruction.  Frames of our own modules
/// are not traced; a traced frame gets the Python local tracer as `f_trace` (3.13 only turns
/// opcode events on for frames that have one; it is never called while this tracer is
/// installed), `f_trace_opcodes`, and no line events (`f_trace_lines`).  The count is
/// `stackless_core::budget::Budget::tick` on the scheduler's budget (the same one that a
/// switch re-arms and the Python core reads as `ticks`/`watermark`/`interval`/`runflags`).
struct TickTracer;

impl pystate::trace::Tracer for TickTracer {
    fn event(
        owner: &Bound<'_, PyAny>,
        frame: &Bound<'_, PyAny>,
        event: TraceEvent,
    ) -> PyResult<()> {
        let py = owner.py();
        let s = owner.cast::<SchedBase>()?;
        let r = refs(py)?;
        match event {
            TraceEvent::Call => {
                let globals = frame.getattr(intern!(py, "f_globals"))?;
                for ours in r.our_globals.bind(py).try_iter()? {
                    if ours?.is(&globals) {
                        return Ok(());
                    }
                }
                frame.setattr(
                    intern!(py, "f_trace"),
                    owner.getattr(intern!(py, "local_tracer"))?,
                )?;
                frame.setattr(intern!(py, "f_trace_opcodes"), true)?;
                frame.setattr(intern!(py, "f_trace_lines"), false)?; // only opcodes count
            }
            TraceEvent::Opcode => {
                let expired = {
                    let b = s.get();
                    if !b.tracing.get(py) {
                        return Ok(());
                    }
                    b.with_budget(py, |budget| budget.tick(1))
                };
                if expired {
                    r.tick_expired.call1(py, (s, frame))?;
                }
            }
        }
        Ok(())
    }
}

/// Install the native tick counter as this thread's trace function (`run(timeout)`); the
/// caller restores the previous one with `sys.settrace`.
#[pyfunction]
fn set_tick_tracer(s: &Bound<'_, SchedBase>) {
    pystate::trace::set_trace::<TickTracer>(s.as_any());
}

/// `slf` as a channel (the method descriptor checked its class: the cached subclass first).
fn channel_of<'a, 'py>(slf: &'a Bound<'py, PyAny>) -> Result<&'a Bound<'py, ChannelBase>, Payload> {
    match CHANNEL.cast(slf) {
        Some(ch) => Ok(ch),
        None => slf.cast::<ChannelBase>().map_err(Payload::from_err),
    }
}

/// `channel.receive()` in its common call shape, as a raw method (`pystate::fastcall`).
fn receive_raw<'py>(
    slf: &Bound<'py, PyAny>,
    _value: Option<&Bound<'py, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    let ch = match channel_of(slf) {
        Ok(ch) => ch,
        Err(e) => return e,
    };
    let called = Called { end, value: None };
    channel_action(ch, slf.py().None(), Dir::Receive, Some(called))
}

/// `channel.send(value)` in its common call shape, as a raw method (`pystate::fastcall`).
fn send_raw<'py>(
    slf: &Bound<'py, PyAny>,
    value: Option<&Bound<'py, PyAny>>,
    end: pystate::fastcall::ArgsEnd,
) -> Payload {
    let ch = match channel_of(slf) {
        Ok(ch) => ch,
        Err(e) => return e,
    };
    let owned = value.map_or_else(|| slf.py().None(), |v| v.clone().unbind());
    channel_action(ch, owned, Dir::Send, Some(Called { end, value }))
}

/// The scheduler of a tasklet being made (N4): this thread's, or none while [`bare_tasklet`]
/// makes a scheduler's main tasklet.
fn sched_for_new(py: Python<'_>) -> PyResult<Option<Obj>> {
    if BARE.with(Cell::get) {
        return Ok(None);
    }
    Ok(Some(current_sched(py, refs(py)?)?.into_any().unbind()))
}

/// `TaskletBase.__new__` without pyo3's argument copies (`pystate::slots`): this thread's
/// scheduler (N4), the rest the default.
struct TaskletNew;

impl pystate::slots::RawNew for TaskletNew {
    type Class = TaskletBase;

    fn init(obj: &Bound<'_, TaskletBase>) -> PyResult<()> {
        let py = obj.py();
        let sched = sched_for_new(py)?; // (may run Python code)
        let old = obj.get().sched.replace(py, sched);
        drop(old); // N3 (None: a fresh tasklet)
        Ok(())
    }

    fn probe_is_default(probe: &Bound<'_, TaskletBase>) -> bool {
        let py = probe.py();
        let TaskletBase {
            sched,
            next,
            prev,
            chan,
            cont,
            func,
            args,
            kwargs,
            tempval,
            blocked,
            alive,
            atomic,
            ignore_nesting,
            block_trap,
            pending_irq,
        } = probe.get();
        [sched, next, prev, chan, cont, func, args, kwargs, tempval]
            .iter()
            .all(|f| f.is_none(py))
            && blocked.get(py) == 0
            && ![alive, atomic, ignore_nesting, block_trap, pending_irq]
                .iter()
                .any(|b| b.get(py))
    }
}

/// Whether tasklets are created by the raw `tp_new` (`pystate::slots`; pyo3's otherwise).
#[pyfunction]
fn tasklet_new_is_raw(py: Python<'_>) -> bool {
    pystate::slots::is_raw_new::<TaskletNew>(&py.get_type::<TaskletBase>())
}

/// Register the scheduler's classes and functions in `continulet._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TaskletBase>()?;
    // (Before stackless.py makes its subclass, which copies the slot: pystate::slots Z3.)
    pystate::slots::set_raw_new::<TaskletNew>(&m.py().get_type::<TaskletBase>());
    m.add_class::<ChannelBase>()?;
    let chan = m.py().get_type::<ChannelBase>();
    pystate::fastcall::install_raw_method(
        &chan,
        pystate::fastcall::RawMethod::Receive,
        receive_raw,
    )?;
    pystate::fastcall::install_raw_method(&chan, pystate::fastcall::RawMethod::Send, send_raw)?;
    m.add_class::<SchedBase>()?;
    m.add_class::<Hooks>()?;
    m.add_function(wrap_pyfunction!(tasklet_new_is_raw, m)?)?;
    m.add_function(wrap_pyfunction!(schedule, m)?)?;
    pystate::fastcall::install_raw_function(
        m,
        pystate::fastcall::RawMethod::Schedule,
        schedule_raw,
    )?;
    m.add_function(wrap_pyfunction!(tasklet_main, m)?)?;
    m.add_function(wrap_pyfunction!(factory_main, m)?)?;
    m.add_function(wrap_pyfunction!(new_cont, m)?)?;
    m.add_function(wrap_pyfunction!(stackless_init, m)?)?;
    m.add_function(wrap_pyfunction!(init_fields, m)?)?;
    m.add_function(wrap_pyfunction!(insert, m)?)?;
    m.add_function(wrap_pyfunction!(tasklet_native_init, m)?)?;
    m.add_function(wrap_pyfunction!(bare_tasklet, m)?)?;
    m.add_function(wrap_pyfunction!(set_tick_tracer, m)?)?;
    m.add_function(wrap_pyfunction!(core_busy, m)?)?;
    Ok(())
}
