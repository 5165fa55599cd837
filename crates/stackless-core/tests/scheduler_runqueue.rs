//! Run-queue behaviour: O(1) ring operations and schedule order, as event traces.

mod sim;
use sim::{Op, Sim};
use stackless_core::ring::{self, Links};

#[test]
fn schedule_round_robins_in_insertion_order() {
    let mut s = Sim::new(vec![Op::Schedule, Op::Schedule]);
    for name in ["a", "b", "c"] {
        let t = s.tasklet(name, vec![Op::Schedule]);
        s.insert(t);
    }
    insta::assert_snapshot!(s.run());
}

#[test]
fn schedule_remove_pauses_until_inserted_again() {
    let mut s = Sim::new(vec![Op::Schedule, Op::Insert(1), Op::Schedule]);
    let a = s.tasklet("a", vec![Op::ScheduleRemove]);
    s.insert(a);
    insta::assert_snapshot!(s.run());
}

#[test]
fn ring_remove_of_the_head_moves_the_head_to_its_successor() {
    let mut s = Sim::new(vec![]);
    let a = s.tasklet("a", vec![]);
    let b = s.tasklet("b", vec![]);
    s.insert(a);
    s.insert(b);
    let mut head = s.head;
    ring::remove(&mut s.links, &mut head, &0);
    assert_eq!(head, Some(a));
    assert_eq!(ring::collect(&s.links, &a), vec![a, b]);
    assert!(s.links.next(&0).is_none());
    ring::unremove(&mut s.links, &mut head, &0);
    assert_eq!(head, Some(0));
    assert_eq!(ring::collect(&s.links, &0), vec![0, a, b]);
}

#[test]
fn budget_rearms_per_switch_unless_total() {
    use stackless_core::budget::{Budget, Check};
    use stackless_core::Flags;
    let mut b = Budget::default();
    assert!(!b.tick(1_000), "no interval: never due");
    b.start(10, Flags(0));
    assert!(!b.tick(9));
    assert!(b.tick(1));
    assert_eq!(b.check(false), Check::Deferred);
    assert!(b.tick(1), "a deferred interrupt stays due");
    b.on_switch();
    assert!(!b.tick(5));
    let mut t = Budget::default();
    t.start(10, Flags(Flags::TOTALTIMEOUT | Flags::SOFT));
    t.tick(6);
    t.on_switch();
    assert!(t.tick(4), "total budget is not re-armed by a switch");
    assert_eq!(t.check(true), Check::Soft);
}
