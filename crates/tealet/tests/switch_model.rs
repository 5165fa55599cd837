//! Many tealets passing control directly among themselves in a random order, checked against
//! a model of who runs when.

use std::cell::RefCell;
use std::rc::Rc;
use tealet::{spawn, Resumed, Suspended};

/// A tiny deterministic PRNG (xorshift64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The message of a hop: (index into the plan, id of the sender). `STOP` ends a worker.
type Msg = (u64, usize);
const STOP: u64 = u64::MAX;

struct World {
    plan: Vec<usize>,
    /// Suspended contexts by id; index `n` is main.
    table: Vec<Option<Suspended>>,
    log: Vec<(u64, usize)>,
}

type Shared = Rc<RefCell<World>>;

/// Switch to `target` from `depth` frames further down (so stacks overlap differently).
#[inline(never)]
fn switch_at_depth(depth: u32, target: Suspended, msg: Msg) -> Resumed<Msg> {
    let pad = std::hint::black_box([depth; 40]);
    let r = if depth == 0 {
        target.switch(msg).unwrap()
    } else {
        switch_at_depth(depth - 1, target, msg)
    };
    assert!(
        std::hint::black_box(pad).iter().all(|&x| x == depth),
        "frame corrupted"
    );
    r
}

fn worker(id: usize, world: &Shared, first: Resumed<Msg>) -> (Suspended, Msg) {
    let n = world.borrow().table.len() - 1;
    let mut count = 0u64;
    let mut r = first;
    loop {
        let (i, prev) = r.value;
        let from = r.from.expect("workers are resumed by switches");
        if i == STOP {
            return (from, (count, id));
        }
        count += 1;
        let next = {
            let mut w = world.borrow_mut();
            w.table[prev] = Some(from);
            assert_eq!(w.plan[i as usize], id, "resumed out of plan order");
            w.log.push((i, id));
            if i as usize + 1 == w.plan.len() {
                n
            } else {
                w.plan[i as usize + 1]
            }
        };
        assert_ne!(next, id, "the plan never repeats a worker");
        let target = world.borrow_mut().table[next]
            .take()
            .expect("target is suspended");
        r = switch_at_depth(((i * 7 + id as u64) % 30) as u32, target, (i + 1, id));
    }
}

#[test]
fn random_switches_among_many_tealets_match_a_model() {
    const N: usize = 40;
    const HOPS: usize = 5000;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // No two consecutive steps by the same worker, so every step is a real switch.
    let mut plan = Vec::with_capacity(HOPS);
    while plan.len() < HOPS {
        let w = (rng.next() % N as u64) as usize;
        if plan.last() != Some(&w) {
            plan.push(w);
        }
    }
    let world: Shared = Rc::new(RefCell::new(World {
        plan: plan.clone(),
        table: (0..=N).map(|_| None).collect(),
        log: Vec::new(),
    }));
    for id in 0..N {
        let w = world.clone();
        let depth = (id % 4) as u32 * 15;
        let r = spawn(move |back| {
            let first = switch_at_depth(depth, back, (0, id));
            worker(id, &w, first)
        })
        .unwrap();
        assert_eq!(r.value, (0, id));
        world.borrow_mut().table[id] = r.from;
    }
    // Start the token.
    let first = world.borrow_mut().table[plan[0]].take().unwrap();
    let r = first.switch((0u64, N)).unwrap();
    assert_eq!(r.value.0 as usize, HOPS, "main resumed after the last hop");
    world.borrow_mut().table[r.value.1] = r.from;
    // The model: the log is the plan, in order; each worker ran as often as planned.
    {
        let w = world.borrow();
        assert_eq!(w.log.len(), HOPS);
        for (k, &(i, id)) in w.log.iter().enumerate() {
            assert_eq!((i as usize, id), (k, plan[k]));
        }
    }
    // Stop every worker; each finishes back into main with its count.
    for id in 0..N {
        let h = world.borrow_mut().table[id].take().unwrap();
        let r = h.switch((STOP, N)).unwrap();
        assert!(r.from.is_none(), "worker {id} finished");
        let expect = plan.iter().filter(|&&w| w == id).count() as u64;
        assert_eq!(r.value, (expect, id));
    }
    assert!(world.borrow().table.iter().all(Option::is_none));
}
