//! White-box tests of the slice bookkeeping, over a `Vec<u8>` posing as a stack.

use crate::stack::{Chain, Slice};

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
