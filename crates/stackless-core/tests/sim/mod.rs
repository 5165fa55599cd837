//! A deterministic scheduler over `stackless-core`, for event-trace snapshots: tasklets are
//! scripts of operations, "switching" is changing which script runs, and every scheduler and
//! channel event is logged as text (the callbacks of Stackless: schedule and channel).
#![allow(dead_code, unreachable_pub)]

use stackless_core::channel::{self, Decision, Dir, Next};
use stackless_core::ring::{self, Links};

/// An operation of a scripted tasklet.
#[derive(Debug, Clone)]
pub enum Op {
    Send(usize, i64),
    Receive(usize),
    Schedule,
    ScheduleRemove,
    /// Insert another (paused) tasklet into the run queue.
    Insert(usize),
}

#[derive(Default)]
struct Node {
    next: Option<usize>,
    prev: Option<usize>,
}

/// Links over a Vec: node indices 0.. are tasklets, then channels.
#[derive(Default)]
pub struct Arena {
    nodes: Vec<Node>,
}

impl Links for Arena {
    type Node = usize;
    fn same(&self, a: &usize, b: &usize) -> bool {
        a == b
    }
    fn next(&self, n: &usize) -> Option<usize> {
        self.nodes[*n].next
    }
    fn prev(&self, n: &usize) -> Option<usize> {
        self.nodes[*n].prev
    }
    fn set_next(&mut self, n: &usize, to: Option<usize>) {
        self.nodes[*n].next = to;
    }
    fn set_prev(&mut self, n: &usize, to: Option<usize>) {
        self.nodes[*n].prev = to;
    }
}

pub struct Chan {
    pub node: usize,
    pub balance: i64,
    pub preference: i64,
    pub schedule_all: bool,
    pub closing: bool,
}

pub struct Task {
    pub name: String,
    pub script: Vec<Op>,
    pub pc: usize,
    pub blocked: i64,
    pub chan: Option<usize>,
    pub tempval: Option<i64>,
    pub block_trap: bool,
    pub alive: bool,
}

pub struct Sim {
    pub links: Arena,
    pub tasks: Vec<Task>,
    pub chans: Vec<Chan>,
    pub head: Option<usize>,
    pub runcount: usize,
    pub current: usize,
    pub log: String,
}

impl Sim {
    /// A simulator whose main tasklet (index 0) runs `main`.
    pub fn new(main: Vec<Op>) -> Sim {
        let mut s = Sim {
            links: Arena::default(),
            tasks: vec![],
            chans: vec![],
            head: None,
            runcount: 0,
            current: 0,
            log: String::new(),
        };
        let m = s.tasklet("main", main);
        s.insert(m);
        s
    }

    pub fn tasklet(&mut self, name: &str, script: Vec<Op>) -> usize {
        self.links.nodes.push(Node::default());
        self.tasks.push(Task {
            name: name.into(),
            script,
            pc: 0,
            blocked: 0,
            chan: None,
            tempval: None,
            block_trap: false,
            alive: true,
        });
        self.tasks.len() - 1
    }

    /// Tasklets must all be made before channels (node indices).
    pub fn channel(&mut self) -> usize {
        self.links.nodes.push(Node::default());
        let node = self.links.nodes.len() - 1;
        ring::make_sentinel(&mut self.links, &node);
        self.chans.push(Chan {
            node,
            balance: 0,
            preference: -1,
            schedule_all: false,
            closing: false,
        });
        self.chans.len() - 1
    }

    pub fn insert(&mut self, t: usize) {
        if self.links.next(&t).is_none() {
            ring::push_back(&mut self.links, &mut self.head, &t);
            self.runcount += 1;
        }
    }

    fn remove(&mut self, t: usize) {
        ring::remove(&mut self.links, &mut self.head, &t);
        self.runcount -= 1;
    }

    #[allow(clippy::needless_pass_by_value)] // called with format!(...)
    fn emit(&mut self, line: String) {
        self.log.push_str(&line);
        self.log.push('\n');
    }

    fn name(&self, t: usize) -> &str {
        &self.tasks[t].name
    }

    fn queue(&self) -> String {
        match &self.head {
            None => "[]".into(),
            Some(h) => {
                let names: Vec<&str> = ring::collect(&self.links, h)
                    .into_iter()
                    .map(|t| self.name(t))
                    .collect();
                format!("[{}]", names.join(" "))
            }
        }
    }

    fn chan_queue(&self, c: usize) -> String {
        let node = self.chans[c].node;
        let names: Vec<&str> = ring::collect(&self.links, &node)
            .into_iter()
            .skip(1)
            .map(|t| self.name(t))
            .collect();
        format!("[{}]", names.join(" "))
    }

    fn switch(&mut self, next: Option<usize>) -> bool {
        let prev = self.current;
        let Some(next) = next else {
            self.emit(format!("deadlock: {} cannot block", self.name(prev)));
            return false;
        };
        if next != prev {
            self.emit(format!(
                "schedule {} -> {}   run queue {}",
                self.name(prev),
                self.name(next),
                self.queue()
            ));
        }
        self.current = next;
        self.head = Some(next);
        true
    }

    fn chan_remove(&mut self, t: usize) {
        let c = self.tasks[t].chan.take().expect("blocked on a channel");
        ring::unlink(&mut self.links, &t);
        self.chans[c].balance -= self.tasks[t].blocked;
        self.tasks[t].blocked = 0;
    }

    /// `generic_channel_action`; false when the simulation must stop.
    fn action(&mut self, c: usize, dir: Dir, value: Option<i64>) -> bool {
        let src = self.current;
        let (balance, preference, schedule_all) = {
            let ch = &self.chans[c];
            (ch.balance, ch.preference, ch.schedule_all)
        };
        let cando = channel::can_do(balance, dir);
        let (sending, willblock) = channel::callback_args(dir, cando);
        self.emit(format!(
            "channel c{c}: {} sending={sending} willblock={willblock} balance={} queue {}",
            self.name(src),
            balance,
            self.chan_queue(c)
        ));
        self.tasks[src].tempval = value;
        match channel::decide(balance, dir, preference, schedule_all) {
            Decision::Handoff(next) => {
                let target = self.links.next(&self.chans[c].node).expect("a waiter");
                self.chan_remove(target);
                let (a, b) = (self.tasks[src].tempval, self.tasks[target].tempval);
                self.tasks[src].tempval = b;
                self.tasks[target].tempval = a;
                let to = match next {
                    Next::SourceNext => {
                        self.insert(target);
                        self.links.next(&src)
                    }
                    Next::Target => {
                        ring::push_after_head(&mut self.links, &mut self.head, &target);
                        self.runcount += 1;
                        Some(target)
                    }
                    Next::Source => {
                        self.insert(target);
                        Some(src)
                    }
                };
                self.switch(to)
            }
            Decision::Block => {
                if let Err(e) =
                    channel::check_block(self.tasks[src].block_trap, self.chans[c].closing)
                {
                    self.emit(format!("error in {}: {}", self.name(src), e.message()));
                    self.tasks[src].tempval = None;
                    return true;
                }
                self.remove(src);
                let node = self.chans[c].node;
                ring::insert_before(&mut self.links, &node, &src);
                self.chans[c].balance += dir.sign();
                self.tasks[src].blocked = dir.sign();
                self.tasks[src].chan = Some(c);
                let next = self.head;
                self.switch(next)
            }
        }
    }

    /// Run every tasklet's script to the end (or to a deadlock).
    pub fn run(&mut self) -> String {
        for _ in 0..10_000 {
            let t = self.current;
            if let Some(v) = self.tasks[t].tempval.take() {
                self.emit(format!("{} got {v}", self.tasks[t].name));
            }
            let task = &self.tasks[t];
            let Some(op) = task.script.get(task.pc).cloned() else {
                // tasklet_end: the next runnable, or stop when main ends.
                self.emit(format!("{} ends", self.name(t)));
                self.tasks[t].alive = false;
                if t == 0 {
                    break;
                }
                self.remove(t);
                let next = self.head.or(Some(0));
                if next == Some(0) && self.links.next(&0).is_none() {
                    self.emit("deadlock: main is blocked and nothing runs".into());
                    break;
                }
                if !self.switch(next) {
                    break;
                }
                continue;
            };
            self.tasks[t].pc += 1;
            let go = match op {
                Op::Send(c, v) => self.action(c, Dir::Send, Some(v)),
                Op::Receive(c) => self.action(c, Dir::Receive, None),
                Op::Schedule => {
                    let next = self.links.next(&t);
                    self.switch(next)
                }
                Op::ScheduleRemove => {
                    let next = self.links.next(&t).filter(|n| *n != t);
                    self.remove(t);
                    self.switch(next)
                }
                Op::Insert(o) => {
                    self.insert(o);
                    true
                }
            };
            if !go {
                break;
            }
        }
        self.emit(format!(
            "runcount {} run queue {}",
            self.runcount,
            self.queue()
        ));
        std::mem::take(&mut self.log)
    }
}
