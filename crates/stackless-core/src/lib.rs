//! # stackless-core: the scheduling rules of Stackless, without Python
//!
//! The decisions C Stackless makes in `scheduling.c` and `channelobject.c`, written once,
//! generic over what a tasklet or a channel *is*, so that they are tested here with plain Rust
//! values and used by the CPython binding (`crates/pybind/src/scheduler/`) on Python objects.
//!
//! * [`ring`]: the O(1) circular doubly linked lists of Stackless.  One list shape serves both
//!   queues: the per-thread **run queue** (no sentinel; its head is the running tasklet while
//!   that one is scheduled) and a **channel's blocked queue** (the channel is the sentinel of
//!   its own ring).  The storage of the links is the caller's, through [`ring::Links`].
//! * [`channel`]: what a send or receive does ([`channel::decide`]: block, or hand over and
//!   let the preferred side run), balance bookkeeping and the close rules.
//! * [`budget`]: the preemption budget of `run(timeout)` (ticks, watermark, `totaltimeout`).
//! * [`Flags`]: the `run()` flags and per-tasklet flags (atomic, ignore_nesting, block_trap).
//!
//! Switching itself is not here: the binding switches with `continuation` (CPython) and the
//! pure-Python module with `_continuation` (PyPy), and both follow the decisions below.
//!
//! ## Example
//!
//! ```
//! use stackless_core::channel::{decide, Decision, Dir, Next};
//! // A send to a channel with a waiting receiver, default preference (-1, the receiver):
//! assert_eq!(decide(-1, Dir::Send, -1, false), Decision::Handoff(Next::Target));
//! // A receive on an empty channel blocks.
//! assert_eq!(decide(0, Dir::Receive, -1, false), Decision::Block);
//! ```
//!
//! # State
//!
//! This crate owns no global state: every function takes the state it changes (a
//! [`ring::Links`] store, a queue head, a [`budget::Budget`]).  Who owns those and which lock
//! guards them is the caller's business (the binding: the GIL, see its module docs).
//!
//! # Invariants
//!
//! * **Q1** A node is in at most one ring at a time; a node in no ring has no links
//!   (`next(t) == None`), which is how "scheduled or blocked" is tested.
//! * **Q2** A run queue's head, when the running tasklet is scheduled, is the running tasklet.
//! * **Q3** A channel's balance equals the sum of the directions (+1 send, -1 receive) of the
//!   tasklets in its ring; every ring in a channel holds tasklets of one direction only.
//!
//! # Safety
//!
//! No `unsafe` (`#![forbid(unsafe_code)]`).

#![forbid(unsafe_code)]

pub mod budget;
pub mod channel;
pub mod ring;

/// `run()` flags (`PyStackless_RunWatchdogEx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Block the thread waiting for other threads instead of waking the watchdog.
    pub const THREADBLOCK: u32 = 1;
    /// Interrupt at the next schedule point instead of at once.
    pub const SOFT: u32 = 2;
    /// Interrupt regardless of the nesting level.
    pub const IGNORE_NESTING: u32 = 4;
    /// The budget counts the whole run, not each slice.
    pub const TOTALTIMEOUT: u32 = 8;

    /// Whether `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}
