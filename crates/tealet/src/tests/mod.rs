//! White-box tests of the slice bookkeeping, over a `Vec<u8>` posing as a stack.

use crate::stack::{Chain, Slice, MAX_LOAN};

fn fake_stack(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn clear_saves_only_the_overlap_and_keeps_order() {
    let mut mem = fake_stack(1000);
    let base = mem.as_mut_ptr();
    // SAFETY: all addresses are inside `mem`, which outlives the slices.
    unsafe {
        let a = Slice::alloc(base.add(100), base.add(900)).unwrap();
        let b = Slice::alloc(base.add(50), base.add(400)).unwrap();
        let mut chain = Chain::new();
        chain.push(a);
        chain.push(b);
        assert_eq!(chain.len(), 2);
        // A target whose far end is 300: b is partly saved (up to 300), a untouched.
        let t = Slice::alloc(base.add(10), base.add(300)).unwrap();
        chain.clear_for(t, base.add(300)).unwrap();
        assert_eq!((*b).saved_len(), 250);
        assert_eq!((*a).saved_len(), 0);
        assert_eq!(chain.len(), 2);
        // A target reaching 600: b fully saved and unlinked, a saved up to 600.
        let t2 = Slice::alloc(base.add(10), base.add(600)).unwrap();
        chain.clear_for(t2, base.add(600)).unwrap();
        assert_eq!((*b).saved_len(), 350);
        assert_eq!((*a).saved_len(), 500);
        assert_eq!(chain.len(), 1);
        // Scribble over the stack, then restore b and check its bytes came back.
        let orig = fake_stack(1000);
        for x in &mut mem[..] {
            *x = 0xEE;
        }
        (*b).restore();
        assert_eq!(&mem[50..400], &orig[50..400]);
        assert_eq!((*a).translate(base.add(150)), (*a).translate(base.add(150)));
        assert_eq!(*(*a).translate(base.add(150)), orig[150]);
        // Beyond what a saved: still in place.
        assert_eq!((*a).translate(base.add(700)), base.add(700).cast_const());
        chain.unlink(a);
        assert_eq!(chain.len(), 0);
        for s in [a, b, t, t2] {
            Slice::free(s);
        }
    }
}

#[test]
fn target_in_chain_is_unlinked_without_saving() {
    let mut mem = fake_stack(256);
    let base = mem.as_mut_ptr();
    // SAFETY: addresses inside `mem`.
    unsafe {
        let t = Slice::alloc(base.add(100), base.add(200)).unwrap();
        let mut chain = Chain::new();
        chain.push(t);
        chain.clear_for(t, base.add(200)).unwrap();
        assert_eq!((*t).saved_len(), 0);
        assert_eq!(chain.len(), 0);
        Slice::free(t);
    }
}

#[test]
fn unlink_from_middle_and_tail() {
    let mut mem = fake_stack(512);
    let base = mem.as_mut_ptr();
    // SAFETY: addresses inside `mem`.
    unsafe {
        let s: Vec<_> = (0..4)
            .map(|i| Slice::alloc(base.add(10 * i), base.add(500 - 100 * i)).unwrap())
            .collect();
        let mut chain = Chain::new();
        for &x in &s {
            chain.push(x);
        }
        chain.unlink(s[0]); // tail (highest stop)
        chain.unlink(s[2]); // middle
        assert_eq!(chain.len(), 2);
        chain.unlink(s[3]);
        chain.unlink(s[1]);
        assert_eq!(chain.len(), 0);
        for x in s {
            Slice::free(x);
        }
    }
}

#[test]
fn failed_clear_leaves_the_target_linked_and_saved_slices_saved() {
    let mut mem = fake_stack(256);
    let base = mem.as_mut_ptr();
    // SAFETY: the small slices live inside `mem`; `huge` is never read because reserving its
    // buffer fails first (its size cannot be allocated).
    unsafe {
        let small = Slice::alloc(base.add(10), base.add(60)).unwrap();
        let target = Slice::alloc(base.add(100), base.add(200)).unwrap();
        let huge_stop = base.wrapping_add(isize::MAX as usize);
        let huge = Slice::alloc(base.add(150), huge_stop).unwrap();
        let mut chain = Chain::new();
        chain.push(huge);
        chain.push(target);
        chain.push(small);
        assert!(chain.clear_for(target, huge_stop).is_err());
        // `small` was saved in full and left the chain; `target` is back; `huge` untouched.
        assert_eq!((*small).saved_len(), 50);
        assert_eq!(chain.len(), 2);
        assert_eq!((*target).saved_len(), 0);
        assert_eq!((*huge).saved_len(), 0);
        chain.unlink(target);
        chain.unlink(huge);
        assert_eq!(chain.len(), 0);
        for s in [small, target, huge] {
            Slice::free(s);
        }
    }
}

#[test]
fn lent_memory_takes_the_lowest_bytes_and_the_heap_the_rest() {
    let mut mem = fake_stack(1000);
    let base = mem.as_mut_ptr();
    let mut lent = vec![0u8; 120];
    let orig = fake_stack(1000);
    // SAFETY: the slice lies inside `mem` and its loan inside `lent`, both outliving it.
    unsafe {
        let a = Slice::alloc(base.add(100), base.add(600)).unwrap();
        (*a).lend(lent.as_mut_ptr(), lent.len());
        let mut chain = Chain::new();
        chain.push(a);
        // A first partial save fits in the loan: nothing on the heap.
        let t = Slice::alloc(base.add(10), base.add(180)).unwrap();
        chain.clear_for(t, base.add(180)).unwrap();
        assert_eq!((*a).saved_len(), 80);
        assert_eq!((*a).heap_len(), 0);
        assert_eq!(&lent[..80], &orig[100..180]);
        // Saving further fills the loan, then spills to the heap.
        let t2 = Slice::alloc(base.add(10), base.add(400)).unwrap();
        chain.clear_for(t2, base.add(400)).unwrap();
        assert_eq!((*a).saved_len(), 300);
        assert_eq!((*a).heap_len(), 180);
        assert_eq!(&lent[..], &orig[100..220]);
        // Every saved byte is found where `translate` says, in the loan or on the heap.
        for addr in [100, 150, 219, 220, 300, 399] {
            assert_eq!(*(*a).translate(base.add(addr)), orig[addr], "byte {addr}");
        }
        assert_eq!(
            (*a).translate(base.add(220)),
            (*a).translate(base.add(221)).wrapping_sub(1)
        );
        assert!((*a).translate(base.add(150)) == lent.as_ptr().add(50));
        // Not saved yet, or not ours: still in place.
        assert_eq!((*a).translate(base.add(400)), base.add(400).cast_const());
        assert_eq!((*a).translate(base.add(50)), base.add(50).cast_const());
        // Restoring puts both parts back at their addresses.
        for x in &mut mem[..] {
            *x = 0xEE;
        }
        chain.unlink(a);
        (*a).restore();
        assert_eq!(&mem[100..400], &orig[100..400]);
        assert!(mem[400..].iter().all(|&x| x == 0xEE));
        // Recycled without a loan: everything goes to its heap buffer.
        Slice::reset(a, base.add(100), base.add(300), std::ptr::dangling_mut(), 0);
        let t3 = Slice::alloc(base.add(10), base.add(300)).unwrap();
        let mut chain = Chain::new();
        chain.push(a);
        chain.clear_for(t3, base.add(300)).unwrap();
        assert_eq!((*a).heap_len(), 200);
        for s in [a, t, t2, t3] {
            Slice::free(s);
        }
    }
}

#[test]
fn a_loan_larger_than_the_slice_keeps_everything_off_the_heap() {
    let mut mem = fake_stack(512);
    let base = mem.as_mut_ptr();
    let orig = fake_stack(512);
    let mut lent = vec![0u8; 4096];
    // SAFETY: as above.
    unsafe {
        let a = Slice::alloc(base.add(64), base.add(448)).unwrap();
        (*a).lend(lent.as_mut_ptr(), lent.len());
        let mut chain = Chain::new();
        chain.push(a);
        let t = Slice::alloc(base.add(0), base.add(512)).unwrap();
        chain.clear_for(t, base.add(512)).unwrap();
        assert_eq!(
            ((*a).saved_len(), (*a).heap_len(), (*a).capacity()),
            (384, 0, 0)
        );
        for x in &mut mem[..] {
            *x = 0;
        }
        (*a).restore();
        assert_eq!(&mem[64..448], &orig[64..448]);
        assert!(lent[384..].iter().all(|&x| x == 0), "wrote past the slice");
        Slice::free(a);
        Slice::free(t);
    }
}

#[test]
fn a_loan_over_max_loan_is_used_in_part() {
    let size = MAX_LOAN + 1000;
    let mut mem = fake_stack(size + 64);
    let base = mem.as_mut_ptr();
    let orig = fake_stack(size + 64);
    let mut lent = vec![0u8; size + 4096];
    // SAFETY: as above.
    unsafe {
        let a = Slice::alloc(base.add(64), base.add(64 + size)).unwrap();
        (*a).lend(lent.as_mut_ptr(), lent.len());
        let mut chain = Chain::new();
        chain.push(a);
        let t = Slice::alloc(base.add(0), base.add(size + 64)).unwrap();
        chain.clear_for(t, base.add(size + 64)).unwrap();
        assert_eq!(((*a).saved_len(), (*a).heap_len()), (size, 1000));
        assert!(
            lent[MAX_LOAN..].iter().all(|&x| x == 0),
            "used past MAX_LOAN"
        );
        for x in &mut mem[..] {
            *x = 0;
        }
        (*a).restore();
        assert_eq!(&mem[64..64 + size], &orig[64..64 + size]);
        Slice::free(a);
        Slice::free(t);
    }
}

#[test]
fn a_slice_is_64_bytes() {
    // With every suspended context; 72 would cost 80 of the heap.
    assert_eq!(std::mem::size_of::<Slice>(), 64);
}
