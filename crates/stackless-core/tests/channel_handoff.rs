//! Channel behaviour as event traces (insta snapshots in `tests/snapshots/`).

mod sim;
use sim::{Op, Sim};

fn ping_pong(preference: i64, schedule_all: bool) -> String {
    let mut s = Sim::new(vec![Op::Schedule; 4]);
    let sender = s.tasklet("sender", vec![Op::Send(0, 1), Op::Send(0, 2)]);
    let receiver = s.tasklet("receiver", vec![Op::Receive(0), Op::Receive(0)]);
    let c = s.channel();
    s.chans[c].preference = preference;
    s.chans[c].schedule_all = schedule_all;
    s.insert(receiver);
    s.insert(sender);
    s.run()
}

#[test]
fn receiver_preferred_runs_the_woken_receiver_first() {
    insta::assert_snapshot!(ping_pong(-1, false));
}

#[test]
fn sender_preferred_keeps_the_sender_running() {
    insta::assert_snapshot!(ping_pong(1, false));
}

#[test]
fn no_preference_appends_the_partner() {
    insta::assert_snapshot!(ping_pong(0, false));
}

#[test]
fn schedule_all_runs_the_sources_successor() {
    insta::assert_snapshot!(ping_pong(-1, true));
}

#[test]
fn blocked_senders_queue_in_order_and_balance_counts_them() {
    let mut s = Sim::new(vec![
        Op::Schedule,
        Op::Receive(0),
        Op::Receive(0),
        Op::Receive(0),
    ]);
    for name in ["a", "b", "c"] {
        let v = i64::from(name.as_bytes()[0]);
        let t = s.tasklet(name, vec![Op::Send(0, v)]);
        s.insert(t);
    }
    s.channel();
    insta::assert_snapshot!(s.run());
}

#[test]
fn closing_channel_refuses_to_block_but_hands_over() {
    let mut s = Sim::new(vec![Op::Schedule, Op::Receive(0), Op::Receive(0)]);
    let t = s.tasklet("sender", vec![Op::Send(0, 7)]);
    s.insert(t);
    let c = s.channel();
    s.chans[c].closing = true;
    insta::assert_snapshot!(s.run());
}

#[test]
fn block_trap_refuses_to_block() {
    let mut s = Sim::new(vec![Op::Receive(0)]);
    s.tasks[0].block_trap = true;
    s.channel();
    insta::assert_snapshot!(s.run());
}

#[test]
fn main_blocked_with_nothing_runnable_is_a_deadlock() {
    let mut s = Sim::new(vec![Op::Receive(0)]);
    s.channel();
    insta::assert_snapshot!(s.run());
}
