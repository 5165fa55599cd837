//! # `continulet.switch` as a raw `METH_FASTCALL | METH_KEYWORDS` method
//!
//! pyo3 parses fast-call arguments itself and does not say where they lie.  The collector
//! needs that: called by a CALL instruction, a method's argument vector is the top of the
//! calling frame's value stack, so its end tells how deep that (suspended) frame's stack is
//! (`refs`, R2).  [`install_switch`] puts a method descriptor of [`entry`] in the class
//! as `switch`; it matches `switch(value=None, to=None)` itself in the common shapes and hands
//! everything else, as a tuple and a dict, to a body that words argument errors as PyPy does.
//! [`install_raw_method`] does the same for the native stackless channel's `receive()` and
//! `send(value)` (a tasklet blocks in them) and the native greenlet's `switch()` /
//! `switch(value)`, other call shapes going to the pyo3 method it replaced;
//! [`install_raw_function`] for the module function `schedule()` / `schedule(retval)`.
//!
//! These methods are entered without pyo3's trampoline: its two frames (304 bytes) would be
//! saved with every context suspended in them.  [`entry`] does what it does in its own frame
//! (80 bytes for `switch`).
//!
//! # Invariants
//!
//! * **A1** The method runs as CPython calls a method: GIL held, `slf` an instance of the
//!   class (the method descriptor checked it) — for the raw module function
//!   (`stackless.schedule`, [`install_raw_function`]) its module —, `args[..nargs +
//!   len(kwnames)]` borrowed for the duration of the call.
//! * **A2** Its body runs as under pyo3's trampoline: attached for pyo3 (pyo3's per-thread
//!   count raised, so a `Py` dropped inside is released at once, not deferred to pyo3's pool),
//!   and a Rust panic never unwinds into CPython (it is raised as `PanicException`).  A context
//!   suspended in the method keeps its raise of the count until it returns, as under pyo3's
//!   trampoline; so while any context of the thread is suspended in one, the count is above
//!   zero and the next entry takes pyo3's fast path.  With none, `Python::try_attach` asks
//!   the interpreter (`PyGILState_Ensure`: the GIL is ours already, A1), and where pyo3
//!   refuses (a finalizing interpreter) the call runs under pyo3's own trampoline, which
//!   assumes what A1 says.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyTuple, PyType};
use pyo3::Borrowed;
use std::os::raw::c_char;
use std::sync::OnceLock;

use crate::Payload;

/// One past the last argument of a fast call (see [`super::Hint`]).
pub(crate) type ArgsEnd = *const *mut ffi::PyObject;

// The bodies of `switch`, called directly (no function pointer to load per switch):
// `crate::switch_fast(self, value, to, end)` with the arguments already matched, and
// `crate::switch_slow(self, args, kwargs, end)` for every other call shape (argument errors,
// mostly).  They return a [`Payload`] (two words, in registers), not a `PyResult`: see
// [`Payload::of`].
use crate::{switch_fast, switch_slow};

/// Whether the string object `name` equals the ASCII `s`.
///
/// # Safety
/// `name` is a live `str` (a keyword name of a call).
unsafe fn name_is(name: *mut ffi::PyObject, s: &std::ffi::CStr) -> bool {
    // SAFETY: per the contract; the comparison cannot fail for a `str`.
    unsafe { ffi::PyUnicode_CompareWithASCIIString(name, s.as_ptr()) == 0 }
}

/// The arguments of a call in the common shapes — `(value=None, to=None)` positionally or
/// by keyword — or None for any other shape.
///
/// # Safety
/// A1.
unsafe fn match_common(
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
    nkw: usize,
) -> Option<[*mut ffi::PyObject; 2]> {
    if npos > 2 {
        return None;
    }
    let mut slots = [std::ptr::null_mut(); 2];
    // SAFETY: A1 - every pointer read is part of the call's borrowed argument vector.
    unsafe {
        for (i, slot) in slots.iter_mut().enumerate().take(npos) {
            *slot = *args.add(i);
        }
        for k in 0..nkw {
            let name = ffi::PyTuple_GET_ITEM(kwnames, k as ffi::Py_ssize_t);
            let i = if name_is(name, c"value") {
                0
            } else if name_is(name, c"to") {
                1
            } else {
                return None;
            };
            if !slots[i].is_null() {
                return None;
            }
            slots[i] = *args.add(npos + k);
        }
    }
    Some(slots)
}

/// `switch`'s `self`, known to be a continulet: the method descriptor checked it (A1).
///
/// # Safety
/// A1.
#[inline(always)]
#[allow(clippy::inline_always)] // a pointer cast
unsafe fn continulet<'a>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
) -> Borrowed<'a, '_, crate::Continulet> {
    // SAFETY: A1 - a live instance of the class, borrowed for the call.
    unsafe { Borrowed::from_ptr(py, slf).cast_unchecked() }
}

/// Any other call shape: the positional arguments as a tuple and the keywords as a dict, for
/// the body that words argument errors as PyPy does.  Out of line: its temporaries stay out
/// of the frames suspended during a common switch.
///
/// # Safety
/// A1.
#[cold]
#[inline(never)]
unsafe fn dispatch_slow(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
    nkw: usize,
) -> Payload {
    // SAFETY: A1.
    let call = unsafe {
        let arg = |i: usize| Borrowed::from_ptr(py, *args.add(i));
        PyTuple::new(py, (0..npos).map(&arg)).and_then(|positional| {
            let kwargs = if nkw == 0 {
                None
            } else {
                let d = PyDict::new(py);
                for k in 0..nkw {
                    let name = Borrowed::from_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, k as _));
                    d.set_item(name, arg(npos + k))?;
                }
                Some(d)
            };
            Ok((positional, kwargs))
        })
    };
    match call {
        Ok((positional, kwargs)) => {
            // SAFETY: A1.
            let (slf, end) = unsafe { (continulet(py, slf), args.add(npos + nkw)) };
            switch_slow(&slf, &positional, kwargs.as_ref(), end)
        }
        Err(e) => Payload::Exc(Box::new(e)),
    }
}

/// [`SwitchEntry`]'s body for a call with keywords (or too many arguments).
///
/// # Safety
/// A1.
#[inline(never)]
unsafe fn dispatch_keywords(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
) -> Payload {
    // SAFETY: A1 - every pointer read is part of the call's borrowed argument vector.
    unsafe {
        let nkw = if kwnames.is_null() {
            0
        } else {
            usize::try_from(ffi::PyTuple_GET_SIZE(kwnames)).unwrap_or(0)
        };
        let Some([value, to]) = match_common(args, npos, kwnames, nkw) else {
            return dispatch_slow(py, slf, args, npos, kwnames, nkw);
        };
        let opt = |p: *mut ffi::PyObject| (!p.is_null()).then(|| Borrowed::from_ptr(py, p));
        let (value, to) = (opt(value), opt(to));
        switch_fast(
            &continulet(py, slf),
            value.as_deref(),
            to.as_deref(),
            args.add(npos + nkw),
        )
    }
}

/// A raw method: the body CPython's call runs (as a payload), entered by [`entry`].
trait RawEntry {
    /// # Safety
    /// A1.
    unsafe fn body(
        py: Python<'_>,
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Payload;
}

/// `switch`: match the call and run a body.  Positional calls (`switch()`, `switch(v)`,
/// `switch(v, to)`) are matched here; calls with keywords out of line
/// ([`dispatch_keywords`]), so that the matching loop's registers and temporaries are not
/// part of this frame, which stays on the stack of the suspended context.
struct SwitchEntry;

impl RawEntry for SwitchEntry {
    #[inline(always)]
    #[allow(clippy::inline_always)] // one frame with the entry's (saved with every suspension)
    unsafe fn body(
        py: Python<'_>,
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Payload {
        let npos = usize::try_from(nargs).unwrap_or(0);
        if !kwnames.is_null() || npos > 2 {
            // SAFETY: A1.
            return unsafe { dispatch_keywords(py, slf, args, npos, kwnames) };
        }
        // SAFETY: A1 - every pointer read is part of the call's borrowed argument vector.
        unsafe {
            let arg = |i: usize| (i < npos).then(|| Borrowed::from_ptr(py, *args.add(i)));
            let (value, to) = (arg(0), arg(1));
            switch_fast(
                &continulet(py, slf),
                value.as_deref(),
                to.as_deref(),
                args.add(npos),
            )
        }
    }
}

/// What CPython calls for a raw method: `E::body` run as pyo3's trampoline runs a method's
/// (A2): attached for pyo3 (so a `Py` dropped inside is released at once, not deferred to
/// pyo3's pool), a Rust panic turned into `PanicException`, the payload turned into a new
/// reference or a raised error.
///
/// Not pyo3's own trampoline: its two frames (304 bytes) would stay on the stack of every
/// context suspended in the method, saved with it; this frame is 80 bytes for `switch`.
/// When pyo3 will not attach (its count is zero and the interpreter is finalizing: a `__del__`
/// run by the last collections, say), the call goes to pyo3's trampoline after all
/// ([`entry_unattached`]), which assumes the thread attached without asking.
///
/// # Safety
/// A1.
unsafe extern "C" fn entry<E: RawEntry>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Python::try_attach(|py| {
            // SAFETY: A1 - CPython calls us as a method.
            into_method_result(py, unsafe { E::body(py, slf, args, nargs, kwnames) })
        })
    }));
    match caught {
        Ok(Some(r)) => r,
        // SAFETY: A1.
        Ok(None) => unsafe { entry_unattached::<E>(slf, args, nargs, kwnames) },
        Err(panic) => raise_panic(&*panic),
    }
}

/// [`entry`] when pyo3 would not attach the thread: the body under pyo3's own trampoline (as
/// before this module had its own entry).
///
/// # Safety
/// A1.
#[cold]
#[inline(never)]
unsafe fn entry_unattached<E: RawEntry>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: A1 - the GIL is held, as pyo3's trampoline requires.
    unsafe {
        pyo3::impl_::trampoline::fastcall_cfunction_with_keywords::<UnderPyo3<E>>(
            slf, args, nargs, kwnames,
        )
    }
}

/// `E::body` as a method body for pyo3's trampoline ([`entry_unattached`]).
struct UnderPyo3<E>(std::marker::PhantomData<E>);

impl<E: RawEntry>
    pyo3::impl_::trampoline::MethodDef<
        pyo3::impl_::trampoline::fastcall_cfunction_with_keywords::Func,
    > for UnderPyo3<E>
{
    const METH: pyo3::impl_::trampoline::fastcall_cfunction_with_keywords::Func = body_result::<E>;
}

/// `E::body` with its payload as a `PyResult` (for pyo3's trampoline).
///
/// # Safety
/// A1.
unsafe fn body_result<E: RawEntry>(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: A1.
    match unsafe { E::body(py, slf, args, nargs, kwnames) } {
        Payload::Value(v) => Ok(v.into_ptr()),
        Payload::Exc(e) => Err(*e),
    }
}

/// Raise a Rust panic caught at the method boundary as `PanicException`, with its message;
/// null, as a method returns then.  (Without asking pyo3 to attach: the GIL is held, A1, and
/// pyo3 may refuse.)
#[cold]
#[inline(never)]
fn raise_panic(panic: &(dyn std::any::Any + Send)) -> *mut ffi::PyObject {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic in a native method".to_owned());
    // SAFETY: A1 - the GIL is held for the whole call.
    let py = unsafe { Python::assume_attached() };
    pyo3::panic::PanicException::new_err(msg).restore(py);
    std::ptr::null_mut()
}

/// A body's payload as a method returns it: a new reference, or null with the error raised.
#[inline(always)]
#[allow(clippy::inline_always)] // part of the entry's frame (see `entry`)
fn into_method_result(py: Python<'_>, p: Payload) -> *mut ffi::PyObject {
    match p {
        Payload::Value(v) => v.into_ptr(),
        Payload::Exc(e) => raise(py, e),
    }
}

/// Raise `e`; null, as a method returns then.  Out of line: the error's words stay out of the
/// entry's frame.
#[cold]
#[inline(never)]
#[allow(clippy::boxed_local)] // one word from the caller's frame; freed here
fn raise(py: Python<'_>, e: Box<PyErr>) -> *mut ffi::PyObject {
    e.restore(py);
    std::ptr::null_mut()
}

/// Make `switch` of `ty` the raw method running `crate::switch_fast` / `crate::switch_slow` (once
/// per process).
pub(crate) fn install_switch(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"switch".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: entry::<SwitchEntry>,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: std::ptr::null::<c_char>(),
    }));
    // SAFETY: `def` lives for the rest of the process (leaked, once per import); `ty` is a
    // live type object; the new reference is owned by the `Bound`.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(
            ty.py(),
            ffi::PyDescr_NewMethod(ty.as_type_ptr(), std::ptr::from_mut(def)),
        )?
    };
    ty.setattr("switch", descr)
}

// ---- other raw methods: channel receive/send, greenlet switch ------------------------------

/// `channel.receive()`, `channel.send(value)`, `greenlet.switch()` / `greenlet.switch(value)`,
/// `stackless.schedule()` / `schedule(retval)` with their argument matched (`value`: the one
/// positional argument, if any; the first argument is the instance, or for a function its
/// module).  Returns a [`Payload`], as `switch`'s bodies.
pub(crate) type RawBody =
    for<'py> fn(&Bound<'py, PyAny>, Option<&Bound<'py, PyAny>>, ArgsEnd) -> Payload;

/// A method or function made raw by [`install_raw_method`] / [`install_raw_function`]: the
/// body for its common call shapes (up to `max_args` positional arguments, at least
/// `min_args`, no keyword), and the method or function it replaced, which every other call
/// shape goes to (its argument checks and messages) — with the instance first for a method
/// (`takes_self`).
struct RawMethodDef {
    min_args: usize,
    max_args: usize,
    body: RawBody,
    replaced: Py<PyAny>,
    takes_self: bool,
}

/// The raw methods' definitions, by `RawMethod as usize`.
static RAW_METHODS: [OnceLock<RawMethodDef>; 4] = [const { OnceLock::new() }; 4];

/// Run `m` for a call.  (Inlined into the two methods: one frame less on the stack of every
/// tasklet blocked in them.)
///
/// # Safety
/// A1.
#[inline(always)]
#[allow(clippy::inline_always)] // measured: 16 bytes less saved per blocked tasklet
unsafe fn raw_dispatch(
    py: Python<'_>,
    m: &RawMethodDef,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> Payload {
    // SAFETY: A1 - every pointer read is part of the call's borrowed argument vector.
    unsafe {
        let npos = usize::try_from(nargs).unwrap_or(0);
        let nkw = if kwnames.is_null() {
            0
        } else {
            usize::try_from(ffi::PyTuple_GET_SIZE(kwnames)).unwrap_or(0)
        };
        if nkw == 0 && npos >= m.min_args && npos <= m.max_args {
            let value = (npos == 1).then(|| Borrowed::from_ptr(py, *args));
            let slf = Borrowed::from_ptr(py, slf);
            return (m.body)(&slf, value.as_deref(), args.add(npos));
        }
        raw_dispatch_other(py, m, slf, args, npos, kwnames, nkw)
    }
}

/// Any other call shape: the method [`install_raw_method`] replaced.  Out of line: its
/// temporaries stay out of the frames of a tasklet blocked in the common shape.
///
/// # Safety
/// A1.
#[cold]
#[inline(never)]
unsafe fn raw_dispatch_other(
    py: Python<'_>,
    m: &RawMethodDef,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    npos: usize,
    kwnames: *mut ffi::PyObject,
    nkw: usize,
) -> Payload {
    // SAFETY: A1 - every pointer read is part of the call's borrowed argument vector.
    unsafe {
        let mut all = Vec::with_capacity(1 + npos + nkw);
        if m.takes_self {
            all.push(slf);
        }
        all.extend((0..npos + nkw).map(|i| *args.add(i)));
        let npos = npos + usize::from(m.takes_self);
        let r = ffi::PyObject_Vectorcall(m.replaced.as_ptr(), all.as_ptr(), npos, kwnames);
        match Bound::from_owned_ptr_or_err(py, r) {
            Ok(v) => Payload::Value(v.unbind()),
            Err(e) => Payload::Exc(Box::new(e)),
        }
    }
}

/// A raw method replaced by [`install_raw_method`] (`RawMethod as u8`): its [`RawMethodDef`]
/// run by [`raw_dispatch`], entered by [`entry`] as `switch`.
struct RawMethodEntry<const WHICH: u8>;

impl<const WHICH: u8> RawEntry for RawMethodEntry<WHICH> {
    #[inline(always)]
    #[allow(clippy::inline_always)] // one frame with the entry's (see `SwitchEntry`)
    unsafe fn body(
        py: Python<'_>,
        slf: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Payload {
        let m = RAW_METHODS[usize::from(WHICH)]
            .get()
            .expect("installed with the method");
        // SAFETY: A1.
        unsafe { raw_dispatch(py, m, slf, args, nargs, kwnames) }
    }
}

/// Which method [`install_raw_method`] replaces.
#[derive(Clone, Copy)]
pub(crate) enum RawMethod {
    /// `channel.receive()`
    Receive = 0,
    /// `channel.send(value)`
    Send = 1,
    /// `greenlet.switch()` and `greenlet.switch(value)`
    GreenletSwitch = 2,
    /// `stackless.schedule()` and `schedule(retval)` (a module function)
    Schedule = 3,
}

/// Make `receive` or `send` of `ty` (the native channel base), or `switch` (the native
/// greenlet base), a raw method running `body` for its common call shapes, so that the native
/// code can tell the collector where the calling frame's arguments end when the operation
/// suspends (`refs`, R2); the method it replaces keeps every other call shape (once per
/// process).
pub(crate) fn install_raw_method(
    ty: &Bound<'_, PyType>,
    which: RawMethod,
    body: RawBody,
) -> PyResult<()> {
    let (name, def) = raw_def(which, ty.as_any(), body, true)?;
    // SAFETY: as in `install_switch`.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))?
    };
    ty.setattr(name, descr)
}

/// Make the function `which` names of `module` raw, as [`install_raw_method`] does for
/// methods (A1: the body gets the module as its first argument).
pub(crate) fn install_raw_function(
    module: &Bound<'_, PyModule>,
    which: RawMethod,
    body: RawBody,
) -> PyResult<()> {
    let (name, def) = raw_def(which, module.as_any(), body, false)?;
    let module_name = module.name()?;
    // SAFETY: `def` is leaked (lives as long as the process), the module and its name are
    // live objects; a new reference or null with an error set.
    let func = unsafe {
        Bound::from_owned_ptr_or_err(
            module.py(),
            ffi::PyCFunction_NewEx(def, module.as_ptr(), module_name.as_ptr()),
        )?
    };
    module.setattr(name, func)
}

/// Record `which`'s [`RawMethodDef`] (once per process; what it replaces is `owner`'s
/// attribute of its name) and make its `PyMethodDef` (leaked); returns its name too.
fn raw_def(
    which: RawMethod,
    owner: &Bound<'_, PyAny>,
    body: RawBody,
    takes_self: bool,
) -> PyResult<(&'static str, *mut ffi::PyMethodDef)> {
    let (name, doc, arity, meth) = match which {
        RawMethod::Receive => (
            c"receive",
            c"receive($self)\n--\n\nReceive a value; blocks until a sender provides one.",
            (0, 0),
            entry::<RawMethodEntry<{ RawMethod::Receive as u8 }>>
                as ffi::PyCFunctionFastWithKeywords,
        ),
        RawMethod::Send => (
            c"send",
            c"send($self, value)\n--\n\nSend a value; blocks until a receiver takes it.",
            (1, 1),
            entry::<RawMethodEntry<{ RawMethod::Send as u8 }>> as ffi::PyCFunctionFastWithKeywords,
        ),
        RawMethod::GreenletSwitch => (
            c"switch",
            c"switch($self, *args, **kwargs)\n--\n\nswitch(*args, **kwargs)\n\nSwitch execution \
              to this greenlet, starting it with ``run(*args, **kwargs)`` if it has\nnot started \
              yet.  Returns the value passed when switching back.",
            (0, 1),
            entry::<RawMethodEntry<{ RawMethod::GreenletSwitch as u8 }>>
                as ffi::PyCFunctionFastWithKeywords,
        ),
        RawMethod::Schedule => (
            c"schedule",
            c"schedule($module, /, *args, **kwargs)\n--\n\nschedule(retval=stackless.current)\n\n\
              Switch to the next runnable tasklet; returns ``retval`` (default: the current \
              tasklet) when this one runs again.",
            (0, 1),
            entry::<RawMethodEntry<{ RawMethod::Schedule as u8 }>>
                as ffi::PyCFunctionFastWithKeywords,
        ),
    };
    let name_str = name.to_str().unwrap_or_default();
    let replaced = owner.getattr(name_str)?;
    let _ = RAW_METHODS[which as usize].set(RawMethodDef {
        min_args: arity.0,
        max_args: arity.1,
        body,
        replaced: replaced.unbind(),
        takes_self,
    });
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: meth,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    }));
    Ok((name_str, std::ptr::from_mut(def)))
}
