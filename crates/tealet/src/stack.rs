//! Stack-slice bookkeeping: which parts of which suspended stacks are still on the C stack,
//! and copying them to the heap and back.  No assembly here, so it is tested on plain buffers
//! (see `src/tests/`).
//!
//! # State
//!
//! A [`Slice`] describes one suspended context's stack, `[start, stop)`.  Its lowest
//! `saved_len()` bytes have been copied away; the rest, `[start + saved_len(), stop)`, is still
//! in place on the C stack.  Slices whose in-place part is not empty are linked into the
//! thread's [`Chain`] through `prev`, ordered by increasing `stop` (the head has the lowest).
//!
//! Saved bytes go first to memory *lent* by the context's owner, if it lent some when the
//! context was suspended ([`crate::Transit::lend`]: an interpreter lends the unused end of the
//! context's own frame stack, which nobody touches while the context is suspended), and the
//! rest to the slice's heap buffer: byte `start + i` is at `lent + i` for `i < lent_cap`, and at
//! `heap[i - lent_cap]` beyond.
//!
//! # Invariants
//!
//! * **S1** `start <= start + saved_len() <= stop`, where `saved_len() = lent_len + heap.len()`;
//!   `lent_len == min(saved_len(), lent_cap)`; the saved bytes are exactly the bytes that were
//!   at `[start, start + saved_len())` when the context was suspended.
//! * **S4** The lent memory `[lent, lent + lent_cap)` is writable and used by nobody else for
//!   as long as the slice is (the lender's promise); a recycled slice lends nothing until it
//!   is given new memory.
//! * **S2** A slice that is not fully saved is in the chain (`in_chain`), and the chain is sorted
//!   by `stop`; a slice not in the chain has `prev == null`.
//! * **S3** No running code writes to the in-place part of a slice in the chain: before a switch
//!   lets a context run in a region, [`Chain::clear_for`] saves every in-place byte below that
//!   region's far end.
//!
//! # Safety
//!
//! The functions here take raw addresses of stack memory.  They are `unsafe` and their callers
//! (the switch callbacks in `lib.rs`, or tests over a `Vec<u8>` posing as a stack) promise that
//! `[start, stop)` of every slice is readable memory and that S1-S3 hold on entry.

use std::alloc::{self, Layout};
use std::ptr;

/// The heap could not provide the bytes to save a stack slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocError;

impl std::fmt::Display for AllocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of memory while saving a stack slice")
    }
}

impl std::error::Error for AllocError {}

/// The most of a loan a slice uses (a larger loan is used in part, which S4 allows).
pub(crate) const MAX_LOAN: usize = u16::MAX as usize;

/// One suspended stack (see the module docs).
pub(crate) struct Slice {
    pub(crate) start: *mut u8,
    pub(crate) stop: *mut u8,
    /// Memory lent for the lowest saved bytes (S4); dangling with `lent_cap == 0` if none
    /// (never null: it is copied from with a count of 0).
    lent: *mut u8,
    /// At most [`MAX_LOAN`] bytes of a loan are used: two bytes each for the loan's size and
    /// its use, and the flag beside them, keep a slice at 64 bytes (with every suspended
    /// context; the heap rounds 72 up to 80).
    lent_cap: u16,
    /// Bytes saved at `lent` (S1).
    lent_len: u16,
    /// Saved bytes beyond the lent ones, from `start + lent_cap` up.
    heap: Vec<u8>,
    prev: *mut Slice,
    in_chain: bool,
}

/// A loan's size as a slice keeps it: at most [`MAX_LOAN`].
fn loan_size(len: usize) -> u16 {
    len.min(MAX_LOAN) as u16
}

impl Slice {
    /// Allocate a slice for `[start, stop)`, nothing saved yet, not in a chain.
    pub(crate) fn alloc(start: *mut u8, stop: *mut u8) -> Result<*mut Slice, AllocError> {
        debug_assert!(start <= stop);
        let layout = Layout::new::<Slice>();
        // SAFETY: `Slice` has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) }.cast::<Slice>();
        if raw.is_null() {
            return Err(AllocError);
        }
        let slice = Slice {
            start,
            stop,
            lent: ptr::dangling_mut(),
            lent_cap: 0,
            lent_len: 0,
            heap: Vec::new(),
            prev: ptr::null_mut(),
            in_chain: false,
        };
        // SAFETY: `raw` is a fresh allocation with the layout of `Slice`.
        unsafe { raw.write(slice) };
        Ok(raw)
    }

    /// Reuse a slice that is no longer in use for `[start, stop)`, keeping its heap buffer's
    /// capacity, with `lent_cap` bytes lent at `lent` (S4; `dangling` and 0: none).
    ///
    /// # Safety
    ///
    /// `slice` came from [`Slice::alloc`], is not in a chain and is owned by the caller; the
    /// loan is as S4 says.
    pub(crate) unsafe fn reset(
        slice: *mut Slice,
        start: *mut u8,
        stop: *mut u8,
        lent: *mut u8,
        lent_cap: usize,
    ) {
        // SAFETY: per the contract.
        unsafe {
            debug_assert!(!(*slice).in_chain);
            (*slice).start = start;
            (*slice).stop = stop;
            (*slice).lent = lent;
            (*slice).lent_cap = loan_size(lent_cap);
            (*slice).lent_len = 0;
            (*slice).heap.clear();
            (*slice).prev = ptr::null_mut();
        }
    }

    /// Save the lowest bytes of this slice to `[lent, lent + cap)` rather than to the heap.
    ///
    /// # Safety
    ///
    /// Nothing is saved yet, and the memory is as S4 says.
    pub(crate) unsafe fn lend(&mut self, lent: *mut u8, cap: usize) {
        debug_assert!(self.saved_len() == 0);
        self.lent = lent;
        self.lent_cap = loan_size(cap);
    }

    /// Bytes lent (S4).
    fn lent_cap(&self) -> usize {
        usize::from(self.lent_cap)
    }

    /// Bytes saved in the lent memory (S1).
    fn lent_len(&self) -> usize {
        usize::from(self.lent_len)
    }

    /// Capacity of the heap buffer, for the recycling policy.
    pub(crate) fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    /// Free a slice allocated by [`Slice::alloc`].
    ///
    /// # Safety
    ///
    /// `slice` came from [`Slice::alloc`], is not in a chain, and is not used afterwards.
    pub(crate) unsafe fn free(slice: *mut Slice) {
        // SAFETY: per the contract, `slice` is a live allocation of `Slice` owned by the caller.
        unsafe {
            debug_assert!(!(*slice).in_chain);
            ptr::drop_in_place(slice);
            alloc::dealloc(slice.cast(), Layout::new::<Slice>());
        }
    }

    /// Bytes saved so far (lent memory and heap).
    pub(crate) fn saved_len(&self) -> usize {
        self.lent_len() + self.heap.len()
    }

    /// Bytes saved to the heap so far (the others are in lent memory).
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Bytes of the whole slice, `stop - start`.
    pub(crate) fn size(&self) -> usize {
        self.stop as usize - self.start as usize
    }

    /// Make room to have saved everything below `upto` (no copying).
    fn reserve_upto(&mut self, upto: *mut u8) -> Result<(), AllocError> {
        let want = (upto as usize - self.start as usize).saturating_sub(self.lent_cap());
        if want > self.heap.len() {
            self.heap
                .try_reserve_exact(want - self.heap.len())
                .map_err(|_| AllocError)?;
        }
        Ok(())
    }

    /// [`Slice::reserve_upto`] then [`Slice::save_upto`]: one fallible step (the initial save).
    ///
    /// # Safety
    ///
    /// As for [`Slice::save_upto`].
    pub(crate) unsafe fn save_upto_checked(&mut self, upto: *mut u8) -> Result<(), AllocError> {
        self.reserve_upto(upto)?;
        // SAFETY: per the contract.
        unsafe { self.save_upto(upto) };
        Ok(())
    }

    /// Copy the in-place bytes of `[start, upto)` that are not saved yet.  Never allocates when
    /// [`Slice::reserve_upto`] succeeded for the same `upto`.
    ///
    /// # Safety
    ///
    /// `[start + saved_len, upto)` is readable and still holds this slice's bytes (S3).
    pub(crate) unsafe fn save_upto(&mut self, upto: *mut u8) {
        debug_assert!(upto <= self.stop);
        let want = upto as usize - self.start as usize;
        if self.lent_cap == 0 {
            // Nothing lent: all of it on the heap.
            let have = self.heap.len();
            if want > have {
                // SAFETY: per the contract.
                unsafe { self.save_to_heap(have, want) };
            }
            return;
        }
        let have = self.saved_len();
        if want <= have {
            return;
        }
        if want <= self.lent_cap() {
            // All of it fits in the loan (the usual case for a context that lent memory).
            // SAFETY: the source range is readable (contract); the destination is inside the
            // lent memory (S4), which is not the stack.
            unsafe {
                ptr::copy_nonoverlapping(self.start.add(have), self.lent.add(have), want - have);
            }
            self.lent_len = want as u16; // want <= lent_cap
        } else {
            // SAFETY: per the contract.
            unsafe { self.save_spilling(have, want) };
        }
    }

    /// [`Slice::save_upto`] of `[have, want)` when the loan cannot hold it all: fill the
    /// loan, then the heap.
    ///
    /// # Safety
    ///
    /// As for [`Slice::save_upto`].
    #[cold]
    unsafe fn save_spilling(&mut self, mut have: usize, want: usize) {
        if have < self.lent_cap() {
            // SAFETY: as in `save_upto`.
            unsafe {
                ptr::copy_nonoverlapping(
                    self.start.add(have),
                    self.lent.add(have),
                    self.lent_cap() - have,
                );
            }
            self.lent_len = self.lent_cap;
            have = self.lent_cap();
        }
        // SAFETY: per the contract.
        unsafe { self.save_to_heap(have, want) };
    }

    /// Append the bytes `[start + have, start + want)` to the heap buffer (`have` bytes of the
    /// slice are saved: in the loan, then `heap`).
    ///
    /// # Safety
    ///
    /// As for [`Slice::save_upto`]; room was reserved ([`Slice::reserve_upto`]).
    #[inline(always)]
    #[allow(clippy::inline_always)] // part of the save's fast path (no loan)
    unsafe fn save_to_heap(&mut self, have: usize, want: usize) {
        // SAFETY: the caller guarantees the source range is readable; `extend_from_slice`
        // copies it into `heap` (room was reserved, so no reallocation can fail here).
        unsafe {
            let src = std::slice::from_raw_parts(self.start.add(have), want - have);
            self.heap.extend_from_slice(src);
        }
    }

    /// Copy the saved bytes back to `[start, start + saved_len)`.
    ///
    /// # Safety
    ///
    /// That range is writable stack memory that nothing live uses any more (the context that
    /// owned it was switched away from, and the code doing the restore runs below `start`).
    pub(crate) unsafe fn restore(&self) {
        // SAFETY: per the contract; neither the lent memory (S4) nor the heap is the stack.
        // (Each copy is skipped when empty: a slice is usually all lent or all on the heap.)
        unsafe {
            if self.lent_len != 0 {
                ptr::copy_nonoverlapping(self.lent, self.start, self.lent_len());
            }
            if !self.heap.is_empty() {
                ptr::copy_nonoverlapping(
                    self.heap.as_ptr(),
                    self.start.add(self.lent_cap()),
                    self.heap.len(),
                );
            }
        }
    }

    /// Where the byte at stack address `addr` of this suspended slice lives now.
    pub(crate) fn translate(&self, addr: *const u8) -> *const u8 {
        // (Below `start`, `i` wraps to a huge offset that neither branch takes.)
        let i = (addr as usize).wrapping_sub(self.start as usize);
        if i < self.lent_len() {
            self.lent.wrapping_add(i)
        } else if i >= self.lent_cap() && i - self.lent_cap() < self.heap.len() {
            self.heap.as_ptr().wrapping_add(i - self.lent_cap())
        } else {
            addr
        }
    }
}

/// The thread's list of slices that still have bytes in place on the C stack.
pub(crate) struct Chain {
    head: *mut Slice,
}

impl Chain {
    pub(crate) const fn new() -> Chain {
        Chain {
            head: ptr::null_mut(),
        }
    }

    /// Link a freshly allocated source slice at the head (it has the lowest `stop`).
    ///
    /// # Safety
    ///
    /// `slice` is live, not in a chain, and its `stop` is `<=` the head's (S2).
    pub(crate) unsafe fn push(&mut self, slice: *mut Slice) {
        // SAFETY: per the contract.
        unsafe {
            debug_assert!(self.head.is_null() || (*slice).stop <= (*self.head).stop);
            (*slice).prev = self.head;
            (*slice).in_chain = true;
        }
        self.head = slice;
    }

    /// Undo the last [`Chain::push`] (used when a switch fails after allocating its source).
    ///
    /// # Safety
    ///
    /// `slice` is the head.
    pub(crate) unsafe fn pop(&mut self, slice: *mut Slice) {
        debug_assert!(self.head == slice);
        // SAFETY: per the contract `slice` is the live head.
        unsafe {
            self.head = (*slice).prev;
            (*slice).prev = ptr::null_mut();
            (*slice).in_chain = false;
        }
    }

    /// Save every in-place byte below `target_stop` so a context whose stack is
    /// `[.., target_stop)` may run; slices that become fully saved leave the chain.  `target`
    /// itself (if in the chain) is unlinked without saving: it is about to be restored.
    ///
    /// On `Err` (no memory for a buffer) the chain is consistent: slices saved so far are
    /// saved for good, and `target` is in the chain as before.
    ///
    /// # Safety
    ///
    /// S1-S3 hold for every slice in the chain, and their in-place bytes are readable.
    pub(crate) unsafe fn clear_for(
        &mut self,
        target: *mut Slice,
        target_stop: *mut u8,
    ) -> Result<(), AllocError> {
        // SAFETY: the chain links live slices (S2), per the contract.
        unsafe {
            // One pass, head first.  A slice that is fully saved leaves the chain at once (that
            // is final and correct even if a later allocation fails); `target` leaves it too,
            // and is linked back at the head if we fail after that.
            let mut cur = self.head;
            let mut target_unlinked = false;
            while !cur.is_null() && (*cur).stop <= target_stop {
                if cur == target {
                    target_unlinked = true;
                } else {
                    let stop = (*cur).stop;
                    if let Err(e) = (*cur).reserve_upto(stop) {
                        self.relink_target(target, target_unlinked);
                        return Err(e);
                    }
                    (*cur).save_upto(stop);
                }
                let prev = (*cur).prev;
                (*cur).prev = ptr::null_mut();
                (*cur).in_chain = false;
                self.head = prev;
                cur = prev;
            }
            if !cur.is_null() && (*cur).start < target_stop {
                if let Err(e) = (*cur).reserve_upto(target_stop) {
                    self.relink_target(target, target_unlinked);
                    return Err(e);
                }
                (*cur).save_upto(target_stop);
            }
        }
        Ok(())
    }

    /// Undo the unlinking of `target` by a failed [`Chain::clear_for`]: it goes back at the
    /// head, where its `stop` (no greater than any remaining slice's) keeps the order (S2).
    ///
    /// # Safety
    ///
    /// `target` is live; `unlinked` says whether `clear_for` took it out.
    unsafe fn relink_target(&mut self, target: *mut Slice, unlinked: bool) {
        if unlinked {
            // SAFETY: per the contract.
            unsafe {
                (*target).prev = self.head;
                (*target).in_chain = true;
            }
            self.head = target;
        }
    }

    /// Remove `slice` from the chain if it is there (destroying a suspended context).
    ///
    /// # Safety
    ///
    /// `slice` and every slice in the chain are live.
    pub(crate) unsafe fn unlink(&mut self, slice: *mut Slice) {
        // SAFETY: per the contract, every pointer followed is a live chain member.
        unsafe {
            if !(*slice).in_chain {
                return;
            }
            let mut link: *mut *mut Slice = &raw mut self.head;
            while !(*link).is_null() {
                if *link == slice {
                    *link = (*slice).prev;
                    (*slice).prev = ptr::null_mut();
                    (*slice).in_chain = false;
                    return;
                }
                link = &raw mut (**link).prev;
            }
            unreachable!("tealet: slice marked in_chain but not found in the chain");
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let mut n = 0;
        let mut cur = self.head;
        while !cur.is_null() {
            n += 1;
            // SAFETY: test helper; the chain links live slices.
            cur = unsafe { (*cur).prev };
        }
        n
    }
}
