//! # continuation: one-shot continuation containers
//!
//! PyPy's `_continuation.continulet` semantics, written over [`tealet`] and generic over the
//! interpreter ([`Host`]).  A continulet *stores* one one-shot continuation at all times (there
//! is no "running" state): either its suspended callable, or whoever switched into it.
//! `switch` exchanges the stored continuation with the current one; `switch(to=)` is PyPy's
//! double switch; `permute` rotates stored continuations without switching.
//!
//! The algorithm is PyPy's `interp_continuation.py`: before a switch the running context's
//! interpreter state is saved and the target's reinstated ([`Host::save`] / [`Host::restore`]);
//! after it, the resumed side runs `post_switch`, which does
//! `destination.h, origin.h = origin.h, <handle of the context we came from>`.
//!
//! # State
//!
//! Each continulet owns a [`Slot`]: `Uninit` until `start`, then `Pending(frame)` while it
//! stores a continuation, `InFlight` for the instant between taking that continuation and the
//! resumed side's `post_switch`, and `Finished` once its callable returned or raised.
//!
//! # Invariants
//!
//! * **C1** A `Frame` (a suspended tealet plus the interpreter state to reinstate) is in
//!   exactly one slot, or inside a message crossing a switch, never both.
//! * **C2** `InFlight` is only ever seen by the two ends of one switch.
//! * **C3** Slots are only touched on their owner thread; the host checks threads before
//!   calling in (see `tealet::ThreadBound`), and every slot lookup of one operation reuses the
//!   running thread's [`ThreadToken`] (one thread-local access per switch, not one per slot).
//!
//! * **C4** A [`Frame`] drops its tealet handle before its interpreter state: the host may
//!   have lent the handle's saved stack memory that the state owns ([`Host::park_and_restore`]).
//!
//! No `unsafe` here: everything unsafe is in `tealet` (stacks) and the host (interpreter).

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::fmt;

pub use tealet::{AllocError, ThreadToken, Transit};

/// The interpreter a continulet runs: how to save and reinstate its per-context state, and
/// how to run a continulet's body.  Implemented by the Python binding.
pub trait Host: 'static {
    /// Interpreter state of a suspended context.
    type State: 'static;
    /// What a switch delivers: a value or an exception.
    type Payload: 'static;
    /// A shared reference to a continulet object.
    type Obj: Clone + 'static;

    /// The slot of `obj` (the host checked that `obj` belongs to `thread`, the running one).
    fn slot(obj: &Self::Obj, thread: ThreadToken) -> &Slot<Self>;
    /// Capture the running context's state before it is suspended.
    fn save() -> Self::State;
    /// [`Host::save`] of the state [`Host::park_and_restore`] reinstated, when the stack
    /// switch that followed failed (the target is stored back as it was): what the host was
    /// told about the switch, if anything, described the origin, not the target.
    fn save_unswitched() -> Self::State {
        Self::save()
    }
    /// [`Host::save`] into a per-thread parking place instead of returning it (a switch
    /// then carries only small values across, keeping every context's stack shallow).
    fn save_parked();
    /// Take what [`Host::save_parked`] stored, on the resumed side of the switch.
    fn take_parked() -> Self::State;
    /// Reinstate a saved state (the resumed context's) into the interpreter.
    fn restore(state: Self::State);
    /// [`Host::save_parked`] then [`Host::restore`]: the host may do both in one step.  The
    /// stack switch follows at once, with `transit`: the host may lend the context being
    /// suspended memory for its saved stack there ([`Transit::lend`]).
    fn park_and_restore(state: Self::State, transit: Transit) {
        let _ = transit;
        Self::save_parked();
        Self::restore(state);
    }
    /// [`Host::resumed`] then [`Host::take_parked`]: the host may do both in one step.
    fn resumed_take_parked() -> Self::State {
        Self::resumed();
        Self::take_parked()
    }
    /// Give the interpreter a fresh state for the context of `obj`, which is starting (the
    /// spawner's state was saved just before).
    fn enter_new(obj: &Self::Obj);
    /// Release what the finished context still holds (its interpreter stack).
    fn leave_finished();
    /// Called on the resumed side right after every switch, before anything else.
    fn resumed();
    /// `obj` just became finished; this is the reference the finished context's switch
    /// carried (the host may keep the object for reuse when it is the last one).
    fn on_finished(obj: Self::Obj);
    /// The body of a continulet, called in its new context.  Its first action must be a
    /// plain `switch` on `obj` (back to the creator, as PyPy's hidden `start` frame does);
    /// returns what the finished continulet delivers to whoever is stored in it.
    fn run(obj: &Self::Obj) -> Self::Payload;
    /// The body of a continulet started by [`start_switch`], called in its new context with
    /// what the first switch into it carried (the switch back to the creator that [`Host::run`]
    /// starts with has, in effect, already happened).  Hosts that never use `start_switch`
    /// keep the default, which finishes the continulet with `payload`.
    fn run_started(obj: &Self::Obj, payload: Self::Payload) -> Self::Payload {
        let _ = obj;
        payload
    }
}

/// What a continulet stores.
pub enum Stored<H: Host + ?Sized> {
    /// Made by `__new__`, not `__init__`ialized yet.
    Uninit,
    /// Holds a suspended context.
    Pending(Frame<H>),
    /// Its continuation is being resumed right now (C2).
    InFlight,
    /// Its callable returned or raised.
    Finished,
}

/// A suspended context: the tealet and the interpreter state to reinstate when resuming it.
pub struct Frame<H: Host + ?Sized> {
    // (Field order matters, C4: the handle is dropped first.)
    handle: tealet::Suspended,
    state: H::State,
}

impl<H: Host + ?Sized> Frame<H> {
    /// Bytes of C stack this context has saved to the heap.
    pub fn saved_bytes(&self) -> usize {
        self.handle.saved_bytes()
    }
    /// The interpreter state that will be reinstated.
    pub fn state(&self) -> &H::State {
        &self.state
    }
}

/// A continulet's storage (see the module docs).
pub struct Slot<H: Host + ?Sized> {
    stored: RefCell<Stored<H>>,
}

impl<H: Host + ?Sized> Default for Slot<H> {
    fn default() -> Self {
        Slot {
            stored: RefCell::new(Stored::Uninit),
        }
    }
}

/// What kind of thing a slot holds (for checks and introspection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not initialized.
    Uninit,
    /// Holds a continuation (`is_pending()` is true).
    Pending,
    /// Finished.
    Finished,
}

impl<H: Host + ?Sized> Slot<H> {
    /// A fresh, uninitialized slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// What it holds.
    pub fn status(&self) -> Status {
        match &*self.stored.borrow() {
            Stored::Uninit => Status::Uninit,
            Stored::Pending(_) | Stored::InFlight => Status::Pending,
            Stored::Finished => Status::Finished,
        }
    }

    /// Look at the stored frame, if any.
    pub fn with_frame<R>(&self, f: impl FnOnce(Option<&Frame<H>>) -> R) -> R {
        match &*self.stored.borrow() {
            Stored::Pending(frame) => f(Some(frame)),
            _ => f(None),
        }
    }

    /// Take the stored frame out, leaving `Finished` (used to destroy a suspended context
    /// without resuming it).
    pub fn take_frame(&self) -> Option<Frame<H>> {
        match self.stored.replace(Stored::Finished) {
            Stored::Pending(frame) => Some(frame),
            other => {
                *self.stored.borrow_mut() = other;
                None
            }
        }
    }

    /// A finished slot made fresh (uninitialized) again, for a host that reuses the object
    /// holding it; false (nothing changed) if it is not finished.
    pub fn reset_finished(&self) -> bool {
        let mut stored = self.stored.borrow_mut();
        if !matches!(*stored, Stored::Finished) {
            return false;
        }
        *stored = Stored::Uninit;
        true
    }

    fn replace(&self, s: Stored<H>) -> Stored<H> {
        self.stored.replace(s)
    }
}

/// Misuse detected by the algorithm (the host maps these to its exceptions; messages are
/// PyPy's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `continulet already __init__ialized`
    AlreadyInitialized,
    /// `continulet already finished`
    AlreadyFinished,
    /// `got an already-finished continulet` (permute)
    PermuteFinished,
    /// Out of memory while saving a stack slice.
    NoMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::AlreadyInitialized => "continulet already __init__ialized",
            Error::AlreadyFinished => "continulet already finished",
            Error::PermuteFinished => "got an already-finished continulet",
            Error::NoMemory => "out of memory while saving a stack slice",
        })
    }
}

impl std::error::Error for Error {}

/// The message crossing a switch (PyPy's `global_state`): the switching side already moved
/// `origin`'s continuation into the destination (`prepare_switch`); the resumed side stores
/// the context it came from in `origin`.
struct Msg<H: Host> {
    origin: H::Obj,
    payload: H::Payload,
}

/// On the resumed side: store the continuation we came from and return the payload (in
/// transit: see [`switch`]).
///
/// Never inlined: its temporaries must not take room in the frame that stays suspended on
/// the stack during the switch (every byte of that frame is copied on every switch).
#[inline(never)]
fn post_switch<H: Host>(
    thread: ThreadToken,
    from: Option<tealet::Suspended>,
    transit: tealet::Transit,
) -> H::Payload {
    post_switch_with::<H>(thread, from, transit.take::<Msg<H>>())
}

/// [`post_switch`] with the message in hand.
#[inline]
fn post_switch_with<H: Host>(
    thread: ThreadToken,
    from: Option<tealet::Suspended>,
    msg: Msg<H>,
) -> H::Payload {
    let Msg { origin, payload } = msg;
    let finished = from.is_none();
    let came_from = if let Some(handle) = from {
        // The switching side parked its state just before the switch.
        Stored::Pending(Frame {
            handle,
            state: H::resumed_take_parked(),
        })
    } else {
        H::resumed();
        Stored::Finished
    };
    // The second half of `destination.h, origin.h = origin.h, came_from` (the switching side
    // did the first before the switch).
    let old = H::slot(&origin, thread).replace(came_from);
    debug_assert!(matches!(old, Stored::InFlight));
    if finished {
        H::on_finished(origin);
    }
    payload
}

/// [`post_switch`] after a spawn (whose value arrived with it).
#[inline(never)]
fn post_spawn<H: Host>(thread: ThreadToken, r: tealet::Resumed<Msg<H>>) -> H::Payload {
    post_switch_with::<H>(thread, r.from, r.value)
}

/// # Errors
///
/// [`Error::AlreadyInitialized`], or [`Error::NoMemory`] if the stack could not be saved.
///
/// `__init__`: create the context and run it up to its first (immediate) switch back, as
/// PyPy's hidden `start` frame does.  The body ([`Host::run`]) starts at the first switch in.
///
/// Returns `Some(payload)` if the new context finished before its first switch back (its body
/// failed at once, e.g. at the interpreter's recursion limit): the payload is what it delivered.
pub fn start<H: Host>(obj: &H::Obj) -> Result<Option<H::Payload>, Error> {
    let thread = ThreadToken::current();
    if H::slot(obj, thread).status() != Status::Uninit {
        return Err(Error::AlreadyInitialized);
    }
    let o = obj.clone();
    let spawned = tealet::spawn_finishing(move |creator: tealet::Suspended| {
        enter_context::<H>(thread, &o, creator);
        // The host's body starts with PyPy's hidden `start` frame, whose first action is a
        // switch straight back to the creator (so the callable is not called yet).
        let result = H::run(&o);
        finish_context::<H>(thread, o, result)
    });
    match spawned {
        Ok(r) => {
            let finished_at_once = r.from.is_none();
            let payload = post_spawn::<H>(thread, r);
            Ok(finished_at_once.then_some(payload))
        }
        Err(AllocError) => Err(Error::NoMemory),
    }
}

/// # Errors
///
/// [`Error::AlreadyInitialized`] if `obj` was started before, or [`Error::NoMemory`] if the
/// stack could not be saved (nothing happened; `payload` is dropped).
///
/// `origin.switch(payload, to=obj)` for an `obj` that was never started, without PyPy's eager
/// start: instead of creating `obj`'s context at `__init__` and suspending it at once at its
/// first switch back, create it now and run its body ([`Host::run_started`]) with `payload`
/// at once.  What each continulet stores afterwards is what the double switch would have left
/// (`origin` stores the switching context, `obj` what `origin` stored; `origin` may be `obj`,
/// a plain first switch), so the rest of its life is an ordinary continulet's.  One stack
/// switch instead of three for a start.  Returns what is delivered back to us later.
pub fn start_switch<H: Host>(
    thread: ThreadToken,
    origin: &H::Obj,
    obj: &H::Obj,
    payload: H::Payload,
) -> Result<H::Payload, Error> {
    if H::slot(obj, thread).status() != Status::Uninit {
        return Err(Error::AlreadyInitialized);
    }
    let (o, from) = (obj.clone(), origin.clone());
    let spawned = tealet::spawn_finishing(move |creator: tealet::Suspended| {
        enter_started::<H>(thread, &from, &o, creator);
        drop(from);
        let result = H::run_started(&o, payload);
        finish_context::<H>(thread, o, result)
    });
    match spawned {
        Ok(r) => Ok(post_spawn::<H>(thread, r)),
        Err(AllocError) => Err(Error::NoMemory),
    }
}

/// First steps of a context started by [`start_switch`]: save the spawner's state, start
/// afresh, and store the spawner as the double switch would (`obj.h, origin.h = origin.h,
/// spawner`).  Never inlined, like [`enter_context`].
#[inline(never)]
fn enter_started<H: Host>(
    thread: ThreadToken,
    origin: &H::Obj,
    obj: &H::Obj,
    creator: tealet::Suspended,
) {
    let from_state = H::save();
    H::enter_new(obj);
    let came_from = Stored::Pending(Frame {
        handle: creator,
        state: from_state,
    });
    let (origin_slot, obj_slot) = (H::slot(origin, thread), H::slot(obj, thread));
    let old = if std::ptr::eq(origin_slot, obj_slot) {
        obj_slot.replace(came_from)
    } else {
        obj_slot.replace(origin_slot.replace(came_from))
    };
    debug_assert!(
        !matches!(old, Stored::Pending(_)),
        "an unstarted continulet stores nothing"
    );
}

/// First steps of a new context: save the spawner's state (still in the interpreter), start
/// afresh, and store the spawner in the continulet (PyPy's `new_stacklet_callback`).
/// Never inlined, so its temporaries do not stay in the context's bottom frame.
#[inline(never)]
fn enter_context<H: Host>(thread: ThreadToken, o: &H::Obj, creator: tealet::Suspended) {
    let from_state = H::save();
    H::enter_new(o);
    H::slot(o, thread).replace(Stored::Pending(Frame {
        handle: creator,
        state: from_state,
    }));
}

/// Last steps of a finished context: release its interpreter stack and hand the result to
/// whoever is stored in the continulet now.  Never inlined, like [`enter_context`].
#[inline(never)]
fn finish_context<H: Host>(
    thread: ThreadToken,
    o: H::Obj,
    result: H::Payload,
) -> tealet::Finished<Msg<H>> {
    H::leave_finished();
    let Stored::Pending(frame) = H::slot(&o, thread).replace(Stored::InFlight) else {
        unreachable!("continuation: a running continulet always stores its resumer")
    };
    H::restore(frame.state);
    let msg = Msg::<H> {
        origin: o,
        payload: result,
    };
    tealet::Transit::of(thread).finish(frame.handle, msg)
}

/// The switch itself, after the host's checks (PyPy `switch`, from "pre-switch" on):
/// `origin` is `self`, `destination` is `self` for a simple switch or `to` for a double
/// switch; `thread` is the running thread, which the host checked both belong to (C3).
/// Returns what is delivered back to us later.
///
/// The message crosses in tealet's transit slot, and every step but the switch is out of
/// line; what is left is inlined into the host's switching frame (a frame of its own, 48
/// bytes, stayed on every suspended stack), where it needs little more than its arguments.
///
/// # Errors
///
/// On failure ([`Error::AlreadyFinished`], [`Error::NoMemory`]) nothing happened; the
/// payload is dropped.  (Not handed back: that made the result a word larger, in the
/// caller's frame, which stays on the suspended stack.)
#[inline]
pub fn switch<H: Host>(
    thread: ThreadToken,
    origin: &H::Obj,
    destination: &H::Obj,
    payload: H::Payload,
) -> Result<H::Payload, Error> {
    let transit = tealet::Transit::of(thread);
    let Some(handle) = prepare_switch::<H>(thread, origin, destination, payload, transit) else {
        return Err(not_switched::<H>(Error::AlreadyFinished, transit));
    };
    match handle.switch_in_transit(transit) {
        Ok(from) => Ok(post_switch::<H>(thread, from, transit)),
        Err(target) => Err(switch_failed::<H>(
            thread,
            origin,
            destination,
            target,
            transit,
        )),
    }
}

/// Before the switch: take the destination's continuation, move the origin's into the
/// destination (`destination.h = origin.h`; the origin is in flight until the resumed side
/// stores the context it came from there), park the running context's state, reinstate the
/// target's, and put the message in transit.  `None` if the destination is finished (nothing
/// changed; the payload is in transit, for [`not_switched`]).  Never inlined, for the same
/// reason as [`post_switch`].
#[inline(never)]
fn prepare_switch<H: Host>(
    thread: ThreadToken,
    origin: &H::Obj,
    destination: &H::Obj,
    payload: H::Payload,
    transit: tealet::Transit,
) -> Option<tealet::Suspended> {
    let msg = Msg::<H> {
        origin: origin.clone(),
        payload,
    };
    let destination_slot = H::slot(destination, thread);
    let frame = match destination_slot.replace(Stored::InFlight) {
        Stored::Pending(frame) => frame,
        other => {
            destination_slot.replace(other);
            transit.put(msg);
            return None;
        }
    };
    let origin_slot = H::slot(origin, thread);
    if !std::ptr::eq(origin_slot, destination_slot) {
        let old_origin = origin_slot.replace(Stored::InFlight);
        destination_slot.replace(old_origin);
    }
    let Frame { handle, state } = frame;
    H::park_and_restore(state, transit);
    transit.put(msg);
    Some(handle)
}

/// The error of a switch that did not happen; the payload, back out of transit, is dropped.
#[cold]
#[inline(never)]
fn not_switched<H: Host>(e: Error, transit: tealet::Transit) -> Error {
    drop(transit.take::<Msg<H>>());
    e
}

/// Nothing ran (no memory to save the stack): put everything back where it was.
#[cold]
#[inline(never)]
fn switch_failed<H: Host>(
    thread: ThreadToken,
    origin: &H::Obj,
    destination: &H::Obj,
    target: tealet::Suspended,
    transit: tealet::Transit,
) -> Error {
    let target_state = H::save_unswitched();
    let (origin_slot, destination_slot) = (H::slot(origin, thread), H::slot(destination, thread));
    let old_origin = destination_slot.replace(Stored::Pending(Frame {
        handle: target,
        state: target_state,
    }));
    if !std::ptr::eq(origin_slot, destination_slot) {
        origin_slot.replace(old_origin);
    }
    H::restore(H::take_parked());
    not_switched::<H>(Error::NoMemory, transit)
}

/// `permute(*continulets)`: rotate the stored continuations (the host filtered out
/// uninitialized ones and checked that all belong to `thread`, the running one).  `c1` gets `cn`'s, `c2` gets `c1`'s, ...
///
/// # Errors
///
/// [`Error::PermuteFinished`] if one of them is finished (nothing permuted).
pub fn permute<H: Host>(thread: ThreadToken, objs: &[H::Obj]) -> Result<(), Error> {
    if objs
        .iter()
        .any(|o| H::slot(o, thread).status() == Status::Finished)
    {
        return Err(Error::PermuteFinished);
    }
    if objs.len() < 2 {
        return Ok(());
    }
    let mut carry = H::slot(&objs[objs.len() - 1], thread).replace(Stored::InFlight);
    for o in objs {
        carry = H::slot(o, thread).replace(carry);
    }
    debug_assert!(matches!(carry, Stored::InFlight));
    Ok(())
}
