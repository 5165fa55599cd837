//! The preemption budget of `run(timeout)` (`PyStackless_RunWatchdogEx` and the interrupt
//! check of the interpreter loop).
//!
//! # State
//!
//! `ticks` counts executed instructions of the thread (monotonic); an interrupt is due when
//! `ticks >= watermark`.  `interval` is the `timeout` of the running `run()` (0 = cooperative).
//! Every switch re-arms the watermark unless `TOTALTIMEOUT` is set, when the whole run shares
//! one budget.
//!
//! # Invariants
//!
//! * **B1** With `interval == 0` no interrupt is ever due from `tick`.
//! * **B2** An interrupt that cannot be taken (atomic tasklet, inside a callback) stays due:
//!   the watermark is not moved, so the next tick asks again.

use crate::Flags;

/// Instruction budget bookkeeping of one thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Instructions counted so far.
    pub ticks: u64,
    /// When the next interrupt is due.
    pub watermark: u64,
    /// The budget of a slice (`run(timeout)`), 0 when cooperative.
    pub interval: u64,
    /// The flags of the outermost timed `run()`.
    pub flags: Flags,
}

/// What the interrupt check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Keep running.
    Continue,
    /// Interrupt now (return the tasklet to the watchdog).
    Interrupt,
    /// `soft`: mark the tasklet; it is interrupted at its next schedule point.
    Soft,
    /// Due, but not allowed now (atomic, callback, switch trap): ask again next tick (B2).
    Deferred,
}

impl Budget {
    /// A timed `run(timeout, flags)` starts.
    pub fn start(&mut self, timeout: u64, flags: Flags) {
        self.interval = timeout;
        self.watermark = self.ticks + timeout;
        self.flags = flags;
    }
    /// A switch happened: a new slice starts unless the budget is total.
    pub fn on_switch(&mut self) {
        if !self.flags.has(Flags::TOTALTIMEOUT) {
            self.watermark = self.ticks + self.interval;
        }
    }
    /// Count `n` instructions; true when an interrupt is due (never with `interval == 0`, B1).
    pub fn tick(&mut self, n: u64) -> bool {
        self.ticks += n;
        self.interval > 0 && self.ticks >= self.watermark
    }
    /// Push the next check `n` instructions ahead.
    pub fn postpone(&mut self, n: u64) {
        self.watermark = self.ticks + n.max(1);
    }
    /// The decision once an interrupt is due; `allowed` is false inside atomic sections,
    /// callbacks and switch traps.
    pub fn check(&mut self, allowed: bool) -> Check {
        if !allowed {
            return Check::Deferred;
        }
        if self.flags.has(Flags::SOFT) {
            self.watermark = self.ticks + self.interval;
            return Check::Soft;
        }
        Check::Interrupt
    }
}
