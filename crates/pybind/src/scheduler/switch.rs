//! The continulet operations the scheduler needs, called from Rust without a Python call:
//! a switch (`c.switch()`), a double switch (`prev.switch(to=next)`) and `permute`.
//!
//! Rule 10 / B2: the callers hold only owned references (`Bound`, `Py`) across
//! [`switch_to_hinted`]; no lock and no `detach` is alive when it is called (the scheduler's
//! classes are frozen: no borrow guards).

use crate::{pystate, Continulet, ObjRef, Payload};
use pyo3::prelude::*;

/// Casts of the tasklets' continulets (of the base class: one pointer comparison).
static CONTINULET: pystate::cast::KnownSubclass<Continulet> = pystate::cast::KnownSubclass::new();

/// `c` as a continulet, or the cast's `TypeError`.
#[inline(always)]
#[allow(clippy::inline_always)] // measured: a call of its own costs ~25 instructions a time
fn continulet<'a, 'py>(c: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, Continulet>> {
    match CONTINULET.cast(c) {
        Some(c) => Ok(c),
        None => Ok(c.cast::<Continulet>()?),
    }
}

/// `prev.switch(to=next)` on two continulets, with the checks of `continulet.switch`, for a
/// native step called from Python with its arguments ending at `end` (null: unknown),
/// taking over the caller's references to `prev` and `next`, the caller's Rust frames holding
/// one reference to `held` across the switch (told to the collector with the switch plan's
/// own: pystate `refs`, R3).
#[inline]
pub(crate) fn switch_to_hinted(
    prev: Bound<'_, PyAny>,
    next: Bound<'_, PyAny>,
    end: crate::pystate::fastcall::ArgsEnd,
    held: *mut pyo3::ffi::PyObject,
) -> Payload {
    match (
        prev.cast_into::<Continulet>(),
        next.cast_into::<Continulet>(),
    ) {
        (Ok(prev), Ok(next)) => Continulet::do_switch_hinted(prev, next, end, held),
        (Err(e), _) | (_, Err(e)) => Payload::from_err(e),
    }
}

/// `c.switch()` on a continulet (no value, no `to`), with the checks of `continulet.switch`.
pub(crate) fn switch_self(c: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let c = continulet(c)?;
    crate::deliver(Continulet::do_switch(
        c,
        Payload::Value(c.py().None()),
        None,
    ))
}

/// `permute(a, b)` on two pending continulets of this thread.
pub(crate) fn permute2(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<()> {
    let a = continulet(a)?;
    let b = continulet(b)?;
    crate::refuse_while_unwinding()?;
    // B1: both belong to this thread before `continuation` sees them.
    let thread = tealet::ThreadToken::current();
    if a.get().core_on(thread).is_none() || b.get().core_on(thread).is_none() {
        return Err(crate::error::new_err("inter-thread support is missing"));
    }
    continuation::permute::<crate::Bind>(thread, &[ObjRef::new(a.clone()), ObjRef::new(b.clone())])
        .map_err(|e| crate::error::new_err(e.to_string()))
}
