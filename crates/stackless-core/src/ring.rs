//! Circular doubly linked lists with caller-owned links: Stackless's run queue and channel
//! queues, every operation O(1).
//!
//! # State
//!
//! The links of a node are read and written only through [`Links`]; a node with no ring has
//! `next == prev == None` (Q1).  A run queue is just its head (`Option<Node>`): the ring has no
//! sentinel and the head is the tasklet that runs next, or the running one (Q2).  A channel's
//! queue is the ring through the channel node itself (its sentinel): `next(channel)` is the
//! first blocked tasklet, `prev(channel)` the last, and the channel links to itself when empty.
//!
//! # Invariants
//!
//! * For every node `n` in a ring, `next(prev(n)) == n` and `prev(next(n)) == n`.
//! * The functions here keep that, given that a node passed to an insert is in no ring and a
//!   node passed to a remove is in one (checked with `debug_assert!`).

/// Storage of the `next`/`prev` links of nodes (tasklets and channel sentinels).
pub trait Links {
    /// A reference to a node (an index, or a shared pointer).
    type Node: Clone;
    /// Node identity.
    fn same(&self, a: &Self::Node, b: &Self::Node) -> bool;
    /// The successor of `n` in its ring, `None` if `n` is in no ring.
    fn next(&self, n: &Self::Node) -> Option<Self::Node>;
    /// The predecessor of `n` in its ring, `None` if `n` is in no ring.
    fn prev(&self, n: &Self::Node) -> Option<Self::Node>;
    /// Set the successor link of `n`.
    fn set_next(&mut self, n: &Self::Node, to: Option<Self::Node>);
    /// Set the predecessor link of `n`.
    fn set_prev(&mut self, n: &Self::Node, to: Option<Self::Node>);
    /// `(next, prev)` of `n` in one read (override when one access is cheaper than two).
    fn links(&self, n: &Self::Node) -> (Option<Self::Node>, Option<Self::Node>) {
        (self.next(n), self.prev(n))
    }
    /// Set both links of `n` in one write (override when one access is cheaper than two).
    fn set_links(&mut self, n: &Self::Node, next: Option<Self::Node>, prev: Option<Self::Node>) {
        self.set_next(n, next);
        self.set_prev(n, prev);
    }
}

/// Link `t` (in no ring) just before `at` (in a ring, possibly alone with itself).
pub fn insert_before<L: Links>(l: &mut L, at: &L::Node, t: &L::Node) {
    debug_assert!(l.next(t).is_none(), "insert of a linked node (Q1)");
    let p = l.prev(at).expect("insert_before: `at` is in a ring");
    l.set_links(t, Some(at.clone()), Some(p.clone()));
    l.set_next(&p, Some(t.clone()));
    l.set_prev(at, Some(t.clone()));
}

/// Unlink `t` from its ring; returns its old successor, or `None` if it was alone.
pub fn unlink<L: Links>(l: &mut L, t: &L::Node) -> Option<L::Node> {
    let (n, p) = l.links(t);
    let n = n.expect("unlink of a node in no ring (Q1)");
    let after = if l.same(&n, t) {
        None
    } else {
        let p = p.expect("a linked node has a predecessor");
        l.set_next(&p, Some(n.clone()));
        l.set_prev(&n, Some(p));
        Some(n)
    };
    l.set_links(t, None, None);
    after
}

/// `SLP_CHAIN_INSERT`: append `t` to the run queue whose head is `head` (before the head).
pub fn push_back<L: Links>(l: &mut L, head: &mut Option<L::Node>, t: &L::Node) {
    match head {
        None => {
            l.set_links(t, Some(t.clone()), Some(t.clone()));
            *head = Some(t.clone());
        }
        Some(h) => {
            let h = h.clone();
            insert_before(l, &h, t);
        }
    }
}

/// Insert `t` right after the head (it runs next).
pub fn push_after_head<L: Links>(l: &mut L, head: &mut Option<L::Node>, t: &L::Node) {
    match head.clone() {
        None => push_back(l, head, t),
        Some(h) => {
            let n = l.next(&h).expect("the head is in the ring");
            insert_before(l, &n, t);
        }
    }
}

/// `slp_current_remove_tasklet`: unlink `t`; if it was the head, its successor becomes head.
pub fn remove<L: Links>(l: &mut L, head: &mut Option<L::Node>, t: &L::Node) {
    let was_head = head.as_ref().is_some_and(|h| l.same(h, t));
    match unlink(l, t) {
        None => *head = None,
        Some(n) if was_head => *head = Some(n),
        Some(_) => {}
    }
}

/// `slp_current_unremove`: put `t` back (if it is in no ring) and make it the head.
pub fn unremove<L: Links>(l: &mut L, head: &mut Option<L::Node>, t: &L::Node) {
    if l.next(t).is_none() {
        push_back(l, head, t);
    }
    *head = Some(t.clone());
}

/// A sentinel node alone in its ring (an empty channel queue).
pub fn make_sentinel<L: Links>(l: &mut L, s: &L::Node) {
    l.set_links(s, Some(s.clone()), Some(s.clone()));
}

/// The nodes of a ring from `start` (inclusive) in `next` order, stopping before `stop`
/// (pass the sentinel as both for a channel queue, then skip it; the head for a run queue).
pub fn collect<L: Links>(l: &L, start: &L::Node) -> Vec<L::Node> {
    let mut out = vec![start.clone()];
    let mut n = l.next(start);
    while let Some(x) = n {
        if l.same(&x, start) {
            break;
        }
        n = l.next(&x);
        out.push(x);
    }
    out
}
