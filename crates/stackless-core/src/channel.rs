//! Channel rules (`channelobject.c`): who waits, who runs after a handoff, balance and close.
//!
//! # State
//!
//! A channel is its ring of blocked tasklets ([`crate::ring`], the channel is the sentinel),
//! its `balance` (> 0 waiting senders, < 0 waiting receivers), `preference` (-1 receiver,
//! 0 none, 1 sender), `schedule_all` and `closing`.  The caller stores them.
//!
//! # Invariants
//!
//! * **Q3** `balance` is the sum of the directions of the blocked tasklets; a send blocks only
//!   when no receiver waits and a receive only when no sender waits, so the ring never mixes
//!   directions.

/// The direction of a channel action (also what `tasklet.blocked` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `send`: +1.
    Send,
    /// `receive`: -1.
    Receive,
}

impl Dir {
    /// +1 for send, -1 for receive.
    pub fn sign(self) -> i64 {
        match self {
            Dir::Send => 1,
            Dir::Receive => -1,
        }
    }
    /// From +1 / -1.
    pub fn from_sign(d: i64) -> Option<Dir> {
        match d {
            1 => Some(Dir::Send),
            -1 => Some(Dir::Receive),
            _ => None,
        }
    }
}

/// Who runs after a handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The woken partner runs now (inserted right after the head); the source stays runnable.
    Target,
    /// The source continues; the partner is appended to the run queue.
    Source,
    /// `schedule_all`: the partner is appended and the source's successor runs.
    SourceNext,
}

/// The outcome of a channel action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No partner waits: the source blocks on the channel.
    Block,
    /// The first waiting partner takes (or gives) the value.
    Handoff(Next),
}

/// Whether a `dir` action finds a partner on a channel with this `balance`.
pub fn can_do(balance: i64, dir: Dir) -> bool {
    match dir {
        Dir::Send => balance < 0,
        Dir::Receive => balance > 0,
    }
}

/// `generic_channel_action`'s choice.
pub fn decide(balance: i64, dir: Dir, preference: i64, schedule_all: bool) -> Decision {
    if !can_do(balance, dir) {
        Decision::Block
    } else if schedule_all {
        Decision::Handoff(Next::SourceNext)
    } else if preference == -dir.sign() {
        Decision::Handoff(Next::Target)
    } else {
        Decision::Handoff(Next::Source)
    }
}

/// Why a tasklet may not block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// `tasklet.block_trap` is set (RuntimeError).
    BlockTrap,
    /// The channel is closing (ValueError).
    Closed,
}

impl BlockError {
    /// C Stackless's message.
    pub fn message(self) -> &'static str {
        match self {
            BlockError::BlockTrap => "this tasklet does not like to be blocked.",
            BlockError::Closed => "Send/receive operation on a closed channel",
        }
    }
}

/// The checks before blocking, in C Stackless's order.
///
/// # Errors
///
/// The first rule that forbids blocking.
pub fn check_block(block_trap: bool, closing: bool) -> Result<(), BlockError> {
    if block_trap {
        Err(BlockError::BlockTrap)
    } else if closing {
        Err(BlockError::Closed)
    } else {
        Ok(())
    }
}

/// `channel.closed`: closing and nobody waiting.
pub fn is_closed(closing: bool, balance: i64) -> bool {
    closing && balance == 0
}

/// `channel.preference = v`, normalised to -1 / 0 / 1.
pub fn normalize_preference(v: i64) -> i64 {
    v.signum()
}

/// The channel callback's `(sending, willblock)` arguments.
pub fn callback_args(dir: Dir, cando: bool) -> (i64, i64) {
    (i64::from(dir == Dir::Send), i64::from(!cando))
}
