//! # What a suspended context holds, for the garbage collector (CPython 3.10-3.13)
//!
//! A continulet's body always references its continulet (the callable's first argument, and
//! `self` of the `switch` it is suspended in), so a suspended continulet nobody else references
//! is a cycle through its own frames.  CPython's collector only sees that cycle if the
//! continulet's `tp_traverse` visits what the frames of the context it stores hold.
//! [`visit_frames`] does, *exactly or less*: visiting a reference that does not exist (a stale
//! value-stack slot) would make the collector free a live object, while not visiting one
//! only keeps things alive (the cycle is then not collected: a leak, never a crash).
//!
//! # Invariants
//!
//! * **R1** Only interpreter frames owned by the thread (not by a generator or frame object)
//!   and lying inside the context's own data-stack chunks are read and visited.
//! * **R2** A frame's value stack is visited only up to a depth CPython wrote and that is still
//!   true: the innermost frame up to the end of the argument vector of the raw `switch` (or
//!   raw channel `receive`/`send`) it is suspended in ([`Hint`]), when that vector lies inside
//!   its value stack; any other frame up to its `stacktop` only when its callee was pushed by
//!   an inlined Python call (CPython set `stacktop` there and has not resumed the frame
//!   since); a frame waiting in a raw channel method that called back into Python up to that
//!   call's argument end (`set_call_end`, recorded for the duration of the call, when it lies
//!   inside the frame's value stack: the frame is suspended in the call, its stack unchanged).
//!   Otherwise only its locals (`co_nlocalsplus` slots, always initialized) are visited.
//! * **R3** Besides frames, a context holds owned references on its C stack: the continulet
//!   whose body it runs (held by `continuation`'s start closure: `owner`), the two of the
//!   switch plan it is suspended in (`Hint::held`), what the bottom of its stack records while
//!   the body runs (`start_held`: the start frame caller's `func`/`args`/`kwds` for a Python
//!   body; the tasklet, function, arguments and keywords for a native tasklet's), and what a
//!   native scheduler step's Rust frames own across its switch (`Hint::extra`: the tasklet
//!   that blocks; its other references there are to objects reachable anyway).  Nothing else
//!   on the C stack of a context that [`visit_frames`] is used for owns a Python reference
//!   (`run_python` borrows; the native core's frames own only what they record, or switch
//!   without a hint: then less is visited).
//! * **R4** (3.10, [`visit_frames_310`]) Frames are `PyFrameObject`s; one that is running
//!   (not a generator's) is owned by the C stack that runs it (`_PyEval_Vector`) and by the
//!   `f_back` of the frame above it.  Going down from the top frame, a frame's references
//!   are visited only while the frame is provably the context's alone: not tracked by the
//!   collector (a running frame is not; a generator's is), no generator (`f_gen` null), and
//!   exactly those references (1, or 2 below another frame of the context) — a frame object
//!   someone else holds (a traceback, `sys._getframe()`) stops the walk there.  What a frame
//!   holds is what `frame_traverse` would visit, the value stack only for the top frame and
//!   only up to the hint (R2): CPython 3.10 leaves `f_stackdepth` unset while a frame runs.
//! * **R5** The same walks serve to *clear* a context that will never run again (its thread
//!   state is being cleared: pystate P7): a reference R1-R4 vouch for is owned by the frame
//!   or stack that holds it, so taking it out and releasing it once is exact; one they do
//!   not vouch for stays (a leak, never a crash).  The chain is walked only before the first
//!   release (a release may free a generator whose frame is in the chain, or run a finalizer
//!   that reads a frame object); after it, only the thread frames found, which lie in the
//!   context's own chunks, are touched.  A frame object someone else holds stays readable
//!   (`clear_frames_finish`, `clear_frames_310`).

#[cfg(Py_3_11)]
use super::Cleared;
use super::{at, offsets as off, Hint, StartHeld, START_HELD};
use pyo3::ffi;
use pyo3::Py;
use pyo3::PyAny;
use std::cell::Cell;
use std::os::raw::c_int;
use std::ptr;

/// View an object pointer stored at `slot` as a `Py` (no reference-count change), for a visit.
///
/// # Safety
/// `slot` holds a non-null pointer to a live object, and stays unchanged while the result
/// is used.
unsafe fn as_py<'a>(slot: *const *mut ffi::PyObject) -> &'a Py<PyAny> {
    // SAFETY: `Py<PyAny>` is a transparent non-null object pointer; per the contract.
    unsafe { &*slot.cast::<Py<PyAny>>() }
}

/// Visit the object at `slot` if there is one.
///
/// # Safety
/// As [`as_py`], except that `slot` may hold null.
unsafe fn visit_slot<E>(
    slot: *const *mut ffi::PyObject,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract.
    unsafe {
        if (*slot).is_null() {
            return Ok(());
        }
        f(as_py(slot))
    }
}

#[cfg(Py_3_11)]
/// Whether `[p, p + len)` lies in the used part of one of the chunks from `chunk` (the
/// context's top chunk, used up to `top`) down its `previous` chain.
///
/// # Safety
/// `chunk` heads the live chunk chain of a suspended context whose top is `top`.
unsafe fn in_chunks(mut chunk: *mut u8, mut top: *mut u8, p: *mut u8, len: usize) -> bool {
    // SAFETY: per the contract; a previous chunk's `top` is the index (in words) of its end.
    unsafe {
        while !chunk.is_null() {
            let data = chunk.add(off::CHUNK_DATA);
            if p >= data && (p as usize).saturating_add(len) <= top as usize {
                return true;
            }
            let prev = *at::<*mut u8>(chunk, off::CHUNK_PREVIOUS);
            if prev.is_null() {
                return false;
            }
            top = prev
                .add(off::CHUNK_DATA)
                .add(*at::<usize>(prev, off::CHUNK_TOP) * 8);
            chunk = prev;
        }
    }
    false
}

#[cfg(Py_3_11)]
/// The frame chain of a suspended context (3.11+), as [`walk_frames`] reads it.
pub(super) struct FrameChain<'a> {
    /// The top frame.
    pub(super) innermost: *mut u8,
    /// The top data-stack chunk and its used end.
    pub(super) chunk: *mut u8,
    pub(super) top: *mut u8,
    /// What the context's suspending switch told.
    pub(super) hint: &'a Hint,
    /// The argument end of a native call its innermost frame waits in (null: none).
    pub(super) call_end: *const *mut ffi::PyObject,
    /// Whether `callee` (a frame of the chain) was pushed by an inlined call of the frame
    /// below it (so that frame's `stacktop` is exact).
    pub(super) callee_inlined: &'a dyn Fn(*mut u8) -> bool,
}

#[cfg(Py_3_11)]
/// Walk the frames of a suspended context from its top frame down (R1, R2): `each(frame,
/// owner, depth)` for every frame owned by the thread and lying in the context's chunks,
/// and — with `generators` — for every generator's frame running in it, `depth` being how
/// many of its `localsplus` slots are known to hold owned references or null (its locals,
/// and the part of its value stack R2 vouches for).  `each` may change the frame (the walk
/// read its `previous` link before the call).
///
/// # Safety
/// The chain from `c.innermost` holds only readable heap frames (3.11: all frames; 3.12+:
/// the exposed chain, P5), the context is suspended (nothing else changes its frames
/// meanwhile).
unsafe fn walk_frames<E>(
    c: &FrameChain<'_>,
    generators: bool,
    each: &mut dyn FnMut(*mut u8, u8, usize) -> Result<(), E>,
) -> Result<(), E> {
    let (chunk, top, hint) = (c.chunk, c.top, c.hint);
    // SAFETY: per the contract and R1 (every field read belongs to a thread-owned frame in
    // the context's chunks or a running generator's frame, or to the code object it holds a
    // strong reference to).
    unsafe {
        let mut callee: *mut u8 = ptr::null_mut();
        let mut frame = c.innermost;
        while !frame.is_null() {
            let owner = *at::<u8>(frame, off::IFRAME_OWNER);
            let prev = *at::<*mut u8>(frame, off::IFRAME_PREVIOUS);
            let ours = owner == off::FRAME_OWNED_BY_THREAD;
            if ours || (generators && owner == off::FRAME_OWNED_BY_GENERATOR) {
                if ours && !in_chunks(chunk, top, frame, off::IFRAME_LOCALSPLUS) {
                    // A thread frame of another context: the chain left ours.
                    return Ok(());
                }
                let code = *at::<*mut ffi::PyObject>(frame, off::IFRAME_CODE);
                if code.is_null() || ffi::Py_TYPE(code) != ptr::addr_of_mut!(ffi::PyCode_Type) {
                    return Ok(());
                }
                let nlocals = *at::<c_int>(code.cast(), off::CODE_NLOCALSPLUS) as usize;
                let stacksize = *at::<c_int>(code.cast(), off::CODE_STACKSIZE) as usize;
                let locals = at::<*mut ffi::PyObject>(frame, off::IFRAME_LOCALSPLUS);
                let (lo, hi) = (locals.add(nlocals), locals.add(nlocals + stacksize));
                let in_call = Hint::end_only(c.call_end).end_within(lo, hi);
                let depth = if callee.is_null() {
                    match hint.end_within(lo, hi).or(in_call) {
                        Some(end) => end.offset_from(locals) as usize,
                        None => nlocals,
                    }
                } else {
                    let stacktop = *at::<c_int>(frame, off::IFRAME_STACKTOP);
                    match (usize::try_from(stacktop), in_call) {
                        (Ok(d), _)
                            if d >= nlocals
                                && d <= nlocals + stacksize
                                && (c.callee_inlined)(callee) =>
                        {
                            d
                        }
                        (_, Some(end)) => end.offset_from(locals) as usize,
                        _ => nlocals,
                    }
                };
                if ours && !in_chunks(chunk, top, frame, off::IFRAME_LOCALSPLUS + depth * 8) {
                    return Ok(());
                }
                each(frame, owner, depth)?;
            }
            callee = frame;
            frame = prev;
        }
    }
    Ok(())
}

#[cfg(Py_3_11)]
/// Visit what the frames of a suspended context hold (R1, R2).
///
/// # Safety
/// As [`walk_frames`].
pub(super) unsafe fn visit_frames<E>(
    c: &FrameChain<'_>,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract; `walk_frames` hands out thread frames of the context only,
    // each with the number of its `localsplus` slots that are owned references or null.
    unsafe {
        walk_frames(c, false, &mut |frame, _, depth| {
            visit_slot(at(frame, off::IFRAME_FRAME_OBJ), f)?;
            visit_slot(at(frame, off::IFRAME_LOCALS), f)?;
            visit_slot(at(frame, off::IFRAME_FUNC), f)?;
            visit_slot(at(frame, off::IFRAME_CODE), f)?;
            let locals = at::<*mut ffi::PyObject>(frame, off::IFRAME_LOCALSPLUS);
            for i in 0..depth {
                visit_slot(locals.add(i), f)?;
            }
            Ok(())
        })
    }
}

/// Move the reference at `slot` (if any) into `out`, leaving null.
///
/// # Safety
/// `slot` holds null or an owned reference, and is writable.
unsafe fn take_slot(slot: *mut *mut ffi::PyObject, out: &mut Vec<*mut ffi::PyObject>) {
    // SAFETY: per the contract.
    unsafe {
        let p = ptr::replace(slot, ptr::null_mut());
        if !p.is_null() {
            out.push(p);
        }
    }
}

#[cfg(Py_3_11)]
/// First step of clearing a suspended context that will never run again (R5): take out the
/// locals, value stack and `f_locals` of each of its thread frames that [`walk_frames`]
/// vouches for (R1, R2), into `out`, and return those frames, top first, for
/// [`clear_frames_finish`] — the caller releases `out` in between (a traceback kept in a
/// local often holds a frame's own frame object).  A generator running in the context gives
/// up the same but its free variables' cells (its `stacktop`, which must cover its locals, is
/// made their count: `f_locals` reads a free variable's cell), and is marked completed with
/// its `previous` link cut: it never runs again, and its deallocation (maybe by that
/// release; or never, when what references it is not vouched for: a leak of the generator
/// alone) clears the rest of its frame with CPython's own code, no `finally` run.  The
/// thread frames' links skip the generators' frames (`f_back` of a surviving frame object
/// never reaches a freed generator).
///
/// # Safety
/// As [`walk_frames`]; the context is never resumed afterwards.
pub(super) unsafe fn clear_frames_start(
    c: &FrameChain<'_>,
    out: &mut Vec<*mut ffi::PyObject>,
) -> Vec<*mut u8> {
    let mut frames: Vec<*mut u8> = Vec::new();
    let mut skipped = false;
    // SAFETY: per the contract: only slots that hold owned references (or null) are taken;
    // a generator's frame is changed only in fields its generator reads when it is freed; a
    // thread frame's `previous` is pointed at the next thread frame of the same chain.
    unsafe {
        let _ = walk_frames::<()>(c, true, &mut |frame, owner, depth| {
            let locals = at::<*mut ffi::PyObject>(frame, off::IFRAME_LOCALSPLUS);
            if owner == off::FRAME_OWNED_BY_GENERATOR {
                // Its locals but the free variables' cells (read through `stacktop`, which
                // must cover the locals: CPython copies that much when a frame object takes
                // the frame over), and its vouched value stack.
                let code = *at::<*mut ffi::PyObject>(frame, off::IFRAME_CODE);
                let nlocals = *at::<c_int>(code.cast(), off::CODE_NLOCALSPLUS);
                let kinds = *at::<*mut ffi::PyObject>(code.cast(), off::CODE_LOCALSPLUSKINDS);
                let kinds = if ffi::PyBytes_Check(kinds) != 0 {
                    std::slice::from_raw_parts(
                        ffi::PyBytes_AsString(kinds).cast::<u8>(),
                        ffi::PyBytes_Size(kinds).max(0) as usize,
                    )
                } else {
                    &[]
                };
                for i in 0..depth {
                    let free = i < nlocals as usize
                        && kinds.get(i).is_none_or(|k| k & off::CO_FAST_FREE != 0);
                    if !free {
                        take_slot(locals.add(i), out);
                    }
                }
                take_slot(at(frame, off::IFRAME_LOCALS), out);
                let gen = frame.sub(off::GEN_IFRAME);
                *at::<i8>(gen, off::GEN_FRAME_STATE) = off::FRAME_COMPLETED;
                *at::<c_int>(frame, off::IFRAME_STACKTOP) = nlocals;
                *at::<*mut u8>(frame, off::IFRAME_PREVIOUS) = ptr::null_mut();
                skipped = true;
                return Ok(());
            }
            for i in 0..depth {
                take_slot(locals.add(i), out);
            }
            take_slot(at(frame, off::IFRAME_LOCALS), out);
            if let Some(&above) = frames.last() {
                if skipped {
                    *at::<*mut u8>(above, off::IFRAME_PREVIOUS) = frame;
                }
            }
            skipped = false;
            frames.push(frame);
            Ok(())
        });
        if skipped {
            if let Some(&last) = frames.last() {
                *at::<*mut u8>(last, off::IFRAME_PREVIOUS) = ptr::null_mut();
            }
        }
    }
    frames
}

#[cfg(Py_3_11)]
/// Second step (see [`clear_frames_start`]): each of `frames` (top first) gives up its
/// function, code and frame object — unless a frame object someone else holds (a
/// traceback, `sys._getframe()`) *pins* the chain: from that frame down, the frames keep
/// their frame object, function and code (a frame object reads them, and `f_back` reaches
/// the frames below) and get `stacktop` 0 (no cell of a cleared local is read).  Returns
/// whether the context's chunks must stay allocated (the caller leaks them then, as
/// `PyState`'s drop does).
///
/// # Safety
/// `frames` came from [`clear_frames_start`] for a context whose chunks are still allocated.
pub(super) unsafe fn clear_frames_finish(
    frames: &[*mut u8],
    out: &mut Vec<*mut ffi::PyObject>,
) -> bool {
    let mut pinned = false;
    // SAFETY: per the contract: the frames lie in the context's chunks; the slots taken hold
    // owned references (or null).
    unsafe {
        for &frame in frames {
            let fobj = at::<*mut ffi::PyObject>(frame, off::IFRAME_FRAME_OBJ);
            if !(*fobj).is_null() && ffi::Py_REFCNT(*fobj) > 1 {
                pinned = true;
            }
            if pinned {
                *at::<c_int>(frame, off::IFRAME_STACKTOP) = 0;
            } else {
                take_slot(fobj, out);
                take_slot(at(frame, off::IFRAME_FUNC), out);
                take_slot(at(frame, off::IFRAME_CODE), out);
            }
        }
    }
    pinned
}

#[cfg(Py_3_11)]
/// The records of what a context's C stack holds (fields of its `OwnedCtx`, R3).
pub(super) struct StackRecords<'a> {
    pub(super) owner: &'a Cell<*mut ffi::PyObject>,
    pub(super) start_held: &'a Cell<StartHeld>,
    pub(super) hint: &'a Cell<Hint>,
    pub(super) call_end: &'a Cell<super::fastcall::ArgsEnd>,
}

#[cfg(Py_3_11)]
/// Clear a suspended context that will never run again (R5, pystate P7): its frames in the
/// two steps of [`clear_frames_start`] / [`clear_frames_finish`], then what its stack
/// records; everything taken is released once.  Returns what may become of its chunks.
///
/// # Safety
/// As [`clear_frames_start`]; `records` are the context's own.
pub(super) unsafe fn clear_context(c: &FrameChain<'_>, records: &StackRecords<'_>) -> Cleared {
    // SAFETY: per the contract; the first step's references are released before the second
    // step, which touches only the frames the first found (in the context's chunks).
    unsafe {
        let mut out = Vec::new();
        let frames = clear_frames_start(c, &mut out);
        super::release(out);
        let mut out = Vec::new();
        let pinned = clear_frames_finish(&frames, &mut out);
        take_stack_held(records.owner, records.start_held, records.hint, &mut out);
        records.call_end.set(ptr::null());
        super::release(out);
        if pinned {
            Cleared::KeepChunks
        } else {
            Cleared::FreeChunks
        }
    }
}

/// Visit the owned references the C stack of a suspended context holds (R3): the continulet
/// whose body it runs (`owner`), what the start frame's caller holds (`start_held`), and the
/// two references of the switch plan it waits in (`hint`).
pub(super) fn visit_stack_held<E>(
    owner: &Cell<*mut ffi::PyObject>,
    start_held: &Cell<StartHeld>,
    hint: &Hint,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: R3 - these references live as long as the suspended context.
    unsafe {
        visit_slot(owner.as_ptr(), f)?;
        let start_held = start_held.as_ptr().cast::<*mut ffi::PyObject>();
        for i in 0..START_HELD {
            visit_slot(start_held.add(i), f)?;
        }
        for p in hint.held.iter().chain(std::iter::once(&hint.extra)) {
            visit_slot(p, f)?;
        }
    }
    Ok(())
}

/// Take out the owned references the C stack of a suspended context holds (R3), for a
/// context that will never run again (R5): the records are emptied, the caller releases
/// what they held.
pub(super) fn take_stack_held(
    owner: &Cell<*mut ffi::PyObject>,
    start_held: &Cell<StartHeld>,
    hint: &Cell<Hint>,
    out: &mut Vec<*mut ffi::PyObject>,
) {
    let h = hint.replace(Hint::NONE);
    out.extend(
        std::iter::once(owner.replace(ptr::null_mut()))
            .chain(start_held.replace(super::START_HELD_NONE))
            .chain(h.held)
            .chain(std::iter::once(h.extra))
            .filter(|p| !p.is_null()),
    );
}

#[cfg(not(Py_3_11))]
/// Walk the frames of a suspended 3.10 context from its top frame `innermost` down, while
/// each frame is the context's alone (R4): `each(frame, depth)`, `depth` being how many
/// value-stack slots are known to hold owned references (R2).  `each` may change the frame
/// but not free it (the walk reads its `f_back` afterwards).
///
/// # Safety
/// `innermost` is the top frame of a suspended 3.10 context (or null); the context's C stack
/// keeps every frame of its `f_back` chain alive and nothing runs meanwhile.
unsafe fn walk_frames_310<E>(
    innermost: *mut u8,
    hint: &Hint,
    call_end: *const *mut ffi::PyObject,
    each: &mut dyn FnMut(*mut u8, usize) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract; each frame read is alive (R4: its owners are the context's C
    // stack and the frame above), every field read is one the 3.10 headers declare, and its
    // code object is held by it.
    unsafe {
        let mut callee: *mut u8 = ptr::null_mut();
        let mut frame = innermost;
        while !frame.is_null() {
            let obj = frame.cast::<ffi::PyObject>();
            let expected_refs = if callee.is_null() { 1 } else { 2 };
            if ffi::Py_REFCNT(obj) != expected_refs
                || ffi::PyObject_GC_IsTracked(obj) != 0
                || !(*at::<*mut ffi::PyObject>(frame, off::FRAME_GEN)).is_null()
            {
                return Ok(());
            }
            let Some(depth) = stack_depth_310(frame, callee, hint, call_end) else {
                return Ok(());
            };
            each(frame, depth)?;
            callee = frame;
            frame = *at::<*mut u8>(frame, off::FRAME_BACK);
        }
    }
    Ok(())
}

#[cfg(not(Py_3_11))]
/// How many value-stack slots of the running 3.10 frame `frame` (below `callee`, null for
/// the top frame) R2 vouches for: up to the end of the suspending switch's arguments
/// (`hint`) for the top frame, a call's depth ([`call_depth_310`]) for the others, or the
/// arguments' end of a native call the frame waits in (`call_end`).  None when the frame
/// has no code object to read (the chain is not what we expect: stop there).
///
/// # Safety
/// `frame` (and `callee`) are live frames of a suspended 3.10 context.
unsafe fn stack_depth_310(
    frame: *mut u8,
    callee: *mut u8,
    hint: &Hint,
    call_end: *const *mut ffi::PyObject,
) -> Option<usize> {
    // SAFETY: per the contract; the code object is held by the frame.
    unsafe {
        let code = *at::<*mut ffi::PyObject>(frame, off::FRAME_CODE);
        if code.is_null() || ffi::Py_TYPE(code) != ptr::addr_of_mut!(ffi::PyCode_Type) {
            return None;
        }
        let stack = *at::<*mut *mut ffi::PyObject>(frame, off::FRAME_VALUESTACK);
        let stacksize =
            usize::try_from(*at::<c_int>(code.cast(), off::CODE_STACKSIZE)).unwrap_or(0);
        let in_call = Hint::end_only(call_end)
            .end_within(stack, stack.add(stacksize))
            .map(|end| end.offset_from(stack).unsigned_abs());
        Some(if callee.is_null() {
            match hint.end_within(stack, stack.add(stacksize)) {
                Some(end) => end.offset_from(stack).unsigned_abs(),
                None => in_call.unwrap_or(0),
            }
        } else {
            call_depth_310(frame, code, stack, callee)
                .filter(|d| *d <= stacksize)
                .or(in_call)
                .unwrap_or(0)
        })
    }
}

#[cfg(not(Py_3_11))]
/// Visit what the frames of a suspended 3.10 context hold (R4, R2): what `frame_traverse`
/// would visit, the value stack up to the depth [`walk_frames_310`] vouches for.
///
/// # Safety
/// As [`walk_frames_310`].
pub(super) unsafe fn visit_frames_310<E>(
    innermost: *mut u8,
    hint: &Hint,
    call_end: *const *mut ffi::PyObject,
    f: &mut dyn FnMut(&Py<PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    // SAFETY: per the contract; the slots read are the frame's own fields and the part of
    // its locals and value stack that holds owned references.
    unsafe {
        walk_frames_310(innermost, hint, call_end, &mut |frame, depth| {
            for slot in [
                off::FRAME_CODE,
                off::FRAME_BUILTINS,
                off::FRAME_GLOBALS,
                off::FRAME_LOCALS,
                off::FRAME_TRACE,
            ] {
                visit_slot(at(frame, slot), f)?;
            }
            let stack = *at::<*mut *mut ffi::PyObject>(frame, off::FRAME_VALUESTACK);
            let mut slot = at::<*mut ffi::PyObject>(frame, off::FRAME_LOCALSPLUS);
            let end = stack.add(depth);
            while slot < end {
                visit_slot(slot, f)?;
                slot = slot.add(1);
            }
            Ok(())
        })
    }
}

#[cfg(not(Py_3_11))]
/// Clear a suspended 3.10 context that will never run again (R5): from its top frame down,
/// each frame gets the value-stack depth R2 vouches for (`f_stackdepth`, which CPython leaves
/// unset while a frame runs) and the reference its C stack holds to it is taken out, for the
/// caller to release — so it is freed as a finished frame is, with its locals and value
/// stack, unless someone else holds it (a traceback, `sys._getframe()`): then its plain
/// locals and `f_locals` are taken out first (cells stay: reading `f_locals` dereferences
/// them), as the other versions' clearing leaves a frame held elsewhere.  A generator's frame
/// (not owned by the C stack) gives up its plain locals, vouched value stack and `f_back`
/// and is marked returned: the generator never runs again, and frees the rest of its frame
/// when it is freed.  Everything is only read before the caller releases anything.
///
/// # Safety
/// As [`walk_frames_310`] (every frame of the chain is alive: each is owned by the context's
/// C stack, or by a generator running on it, and by the `f_back` of the frame above); the
/// context is never resumed afterwards.
pub(super) unsafe fn clear_frames_310(
    innermost: *mut u8,
    hint: &Hint,
    call_end: *const *mut ffi::PyObject,
    out: &mut Vec<*mut ffi::PyObject>,
) {
    // SAFETY: per the contract; the slots taken hold owned references or null; the C
    // stack's reference to a running frame is owned (R4).
    unsafe {
        let mut callee: *mut u8 = ptr::null_mut();
        let mut frame = innermost;
        while !frame.is_null() {
            let Some(depth) = stack_depth_310(frame, callee, hint, call_end) else {
                return;
            };
            let code = *at::<*mut ffi::PyObject>(frame, off::FRAME_CODE);
            let stack = *at::<*mut *mut ffi::PyObject>(frame, off::FRAME_VALUESTACK);
            let back = *at::<*mut u8>(frame, off::FRAME_BACK);
            let nlocals =
                usize::try_from(*at::<c_int>(code.cast(), off::CODE_NLOCALS)).unwrap_or(0);
            let locals = at::<*mut ffi::PyObject>(frame, off::FRAME_LOCALSPLUS);
            let is_gen = !(*at::<*mut ffi::PyObject>(frame, off::FRAME_GEN)).is_null();
            // Its owners in the chain: the C stack, and the `f_back` of the frame above.
            let expected = if callee.is_null() { 1 } else { 2 };
            let held_elsewhere =
                is_gen || usize::try_from(ffi::Py_REFCNT(frame.cast())).unwrap_or(0) != expected;
            if held_elsewhere {
                for i in 0..nlocals.min(stack.offset_from(locals).unsigned_abs()) {
                    take_slot(locals.add(i), out);
                }
                take_slot(at(frame, off::FRAME_LOCALS), out);
                for i in 0..depth {
                    take_slot(stack.add(i), out);
                }
                *at::<c_int>(frame, off::FRAME_STACKDEPTH) = 0;
            } else {
                *at::<c_int>(frame, off::FRAME_STACKDEPTH) = c_int::try_from(depth).unwrap_or(0);
            }
            if is_gen {
                *at::<i8>(frame, off::FRAME_STATE) = off::FRAME_RETURNED;
                take_slot(at(frame, off::FRAME_BACK), out);
            } else {
                out.push(frame.cast());
            }
            callee = frame;
            frame = back;
        }
    }
}

#[cfg(not(Py_3_11))]
/// How many value-stack slots of the 3.10 frame `frame` (code `code`, value stack `stack`)
/// are live while it waits in the call that made `callee`, the frame above it (R4): only
/// for a `CALL_FUNCTION`/`CALL_METHOD`/`CALL_FUNCTION_KW` whose called object, still in its
/// slot, is the Python function whose code `callee` runs (so the call is under way: CPython
/// pops the called object and its arguments only when the call returns), at the depth the
/// compiler's own stack effects give for that instruction ([`depth_before`]) — less the
/// keyword names `CALL_FUNCTION_KW` popped before the call.  `None` otherwise.
///
/// # Safety
/// As [`visit_frames_310`], for `frame` and `callee`.
unsafe fn call_depth_310(
    frame: *mut u8,
    code: *mut ffi::PyObject,
    stack: *mut *mut ffi::PyObject,
    callee: *mut u8,
) -> Option<usize> {
    // SAFETY: per the contract; `co_code` is a bytes object the code object holds, not
    // changed while the frame lives.
    unsafe {
        let co_code = *at::<*mut ffi::PyObject>(code.cast(), off::CODE_CODE);
        if co_code.is_null() || ffi::PyBytes_Check(co_code) == 0 {
            return None;
        }
        let len = usize::try_from(ffi::PyBytes_Size(co_code)).ok()?;
        let bytes = std::slice::from_raw_parts(ffi::PyBytes_AsString(co_code).cast::<u8>(), len);
        let mut start = usize::try_from(*at::<c_int>(frame, off::FRAME_LASTI)).ok()?;
        while start > 0 && bytes.get(2 * (start - 1)) == Some(&off::OP_EXTENDED_ARG) {
            start -= 1;
        }
        let (op, arg, _) = decode(bytes, start)?;
        let depth = match op {
            off::OP_CALL_FUNCTION | off::OP_CALL_METHOD => depth_before(bytes, start)?,
            off::OP_CALL_FUNCTION_KW => depth_before(bytes, start)?.checked_sub(1)?,
            _ => return None,
        };
        let n = usize::try_from(arg).ok()?;
        // The called object: below the arguments; for CALL_METHOD, the method below `self`,
        // or (no method found: a null in its place) the callable below the arguments.
        let func_at = if op == off::OP_CALL_METHOD {
            let meth_at = depth.checked_sub(n + 2)?;
            if (*stack.add(meth_at)).is_null() {
                meth_at + 1
            } else {
                meth_at
            }
        } else {
            depth.checked_sub(n + 1)?
        };
        let func = *stack.add(func_at);
        if func.is_null()
            || ffi::Py_TYPE(func) != ptr::addr_of_mut!(ffi::PyFunction_Type)
            || *at::<*mut ffi::PyObject>(func.cast(), off::FUNC_CODE)
                != *at::<*mut ffi::PyObject>(callee, off::FRAME_CODE)
        {
            return None;
        }
        Some(depth)
    }
}

#[cfg(not(Py_3_11))]
/// The instruction of 3.10 bytecode `code` whose first code unit is `start` (its
/// `EXTENDED_ARG` prefixes included): opcode, full argument, index of the next instruction.
fn decode(code: &[u8], start: usize) -> Option<(u8, u32, usize)> {
    let mut arg: u32 = 0;
    let mut i = start;
    loop {
        let op = *code.get(2 * i)?;
        arg = (arg << 8) | u32::from(*code.get(2 * i + 1)?);
        i += 1;
        if op != off::OP_EXTENDED_ARG {
            return Some((op, arg, i));
        }
        if arg > 0x00FF_FFFF {
            return None;
        }
    }
}

#[cfg(not(Py_3_11))]
/// Where a 3.10 jump instruction `op` (argument `arg`, next instruction `next`) may go.
fn jump_target(op: u8, arg: u32, next: usize) -> Option<usize> {
    let arg = usize::try_from(arg).ok()?;
    match op {
        off::OP_FOR_ITER
        | off::OP_JUMP_FORWARD
        | off::OP_SETUP_FINALLY
        | off::OP_SETUP_WITH
        | off::OP_SETUP_ASYNC_WITH => next.checked_add(arg),
        off::OP_JUMP_IF_FALSE_OR_POP
        | off::OP_JUMP_IF_TRUE_OR_POP
        | off::OP_JUMP_ABSOLUTE
        | off::OP_POP_JUMP_IF_FALSE
        | off::OP_POP_JUMP_IF_TRUE
        | off::OP_JUMP_IF_NOT_EXC_MATCH => Some(arg),
        _ => None,
    }
}

#[cfg(not(Py_3_11))]
/// The depth of the value stack of 3.10 bytecode `code` before the instruction starting at
/// code unit `at`: every path from the start is followed with the compiler's own stack
/// effects (`PyCompile_OpcodeStackEffectWithJump`, jump and fall-through apart), as the
/// compiler's `stackdepth()` computed `co_stacksize`.  `None` when two paths disagree, an
/// opcode is unknown, a path leaves the code, or `at` is not reached.
fn depth_before(code: &[u8], at: usize) -> Option<usize> {
    /// `PY_INVALID_STACK_EFFECT`.
    const INVALID: c_int = c_int::MAX;
    let units = code.len() / 2;
    let mut depth: Vec<i32> = vec![-1; units];
    let mut paths: Vec<(usize, i32)> = vec![(0, 0)];
    let effect = |op: u8, arg: u32, jump: c_int| -> Option<i32> {
        let oparg = c_int::try_from(arg).ok()?;
        // SAFETY: a pure function of its arguments in CPython's compiler.
        let e = unsafe { ffi::PyCompile_OpcodeStackEffectWithJump(c_int::from(op), oparg, jump) };
        (e != INVALID).then_some(e)
    };
    while let Some((mut i, mut d)) = paths.pop() {
        loop {
            let seen = *depth.get(i)?;
            if seen >= 0 {
                if seen != d {
                    return None;
                }
                break;
            }
            let (op, arg, next) = decode(code, i)?;
            depth.get_mut(i..next)?.fill(d);
            if let Some(target) = jump_target(op, arg, next) {
                let to = d.checked_add(effect(op, arg, 1)?)?;
                if to < 0 {
                    return None;
                }
                paths.push((target, to));
            }
            if matches!(
                op,
                off::OP_RETURN_VALUE
                    | off::OP_RAISE_VARARGS
                    | off::OP_RERAISE
                    | off::OP_JUMP_ABSOLUTE
                    | off::OP_JUMP_FORWARD
            ) {
                break;
            }
            d = d.checked_add(effect(op, arg, 0)?)?;
            if d < 0 {
                return None;
            }
            i = next;
        }
    }
    usize::try_from(*depth.get(at)?).ok()
}
