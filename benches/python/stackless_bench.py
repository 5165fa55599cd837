"""Stackless on CPython: native core vs pure-Python core vs asyncio, one run.

    python stackless_bench.py            # the table: each mode in its own subprocess
    python stackless_bench.py --one      # this process's mode only (CONTINULET_PURE=1: pure)
    python stackless_bench.py --instructions   # instructions per operation (callgrind), both cores
    python stackless_bench.py --smoke    # every operation once, small counts (ci/test), no timing

Operations (best of REPEATS runs, ns per operation):
  ping-pong   one message through a channel between two tasklets (send + receive, 2 switches)
  schedule    one schedule() call with two tasklets taking turns (1 switch)
  create+run  tasklet(f)() and its whole life, in batches run by stackless.run()
  blocked     bytes of RSS per tasklet blocked on a channel receive (N of them)
  preempt     one iteration of a busy loop (~5 instructions) in a tasklet under
              run(timeout): the preemption budget counted per instruction (native core: a C
              trace function; pure core: a sys.settrace function); "busy" is the same loop
              under run() without a budget
asyncio: the same ping-pong through two asyncio.Queue objects, and the same blocked count
(coroutines awaiting a Queue.get()).

The design's floor, beside C Stackless's figures (the issue's: 178 ns per message, 163 ns per
schedule(), 610 bytes per blocked tasklet, measured on these machines):
  switch floor   the two switches one ping-pong message needs, with no channel work: a
                 continulet switched into and back from a Python loop (ns per round trip)
  saved stack    the C stack a blocked tasklet keeps (median over the blocked ones, bytes):
                 C Stackless soft-switches, its blocked tasklets keep none
"""
import gc
import json
import os
import subprocess
import sys
import time

REPEATS = 5
N = 100_000
N_BLOCKED = 20_000


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best(fn, n):
    times = []
    for _ in range(REPEATS):
        gc.collect()
        t = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - t)
    return min(times) / n * 1e9


def stack_saved_reader():
    """`stack_saved(continulet)`, its saved C-stack bytes: ours only (None on PyPy)."""
    try:
        from continulet import _native
    except ImportError:  # PyPy: its own _continuation
        return None
    return _native.stack_saved


def median(values):
    return sorted(values)[len(values) // 2]


def core_mode():
    from stackless import _core
    return "native" if _core.NATIVE is not None else "pure"


def stackless_ops():
    import stackless

    def pingpong(n):
        ch = stackless.channel()

        def ping():
            send = ch.send
            for i in range(n):
                send(i)

        def pong():
            receive = ch.receive
            for _ in range(n):
                receive()

        stackless.tasklet(ping)()
        stackless.tasklet(pong)()
        stackless.run()

    def schedule(n):
        sched = stackless.schedule

        def turn():
            for _ in range(n // 2):
                sched()

        stackless.tasklet(turn)()
        stackless.tasklet(turn)()
        stackless.run()

    def create_run(n):
        def f():
            pass

        t = stackless.tasklet
        for _ in range(n // 1000):
            for _ in range(1000):
                t(f)()
            stackless.run()

    def blocked(n, saved=None):
        ch = stackless.channel()
        for _ in range(1000):  # warm-up: allocator pools
            stackless.tasklet(ch.receive)()
        stackless.run()
        gc.collect()
        before = rss()
        for _ in range(n):
            stackless.tasklet(ch.receive)()
        stackless.run()
        per = (rss() - before) / n
        if saved is not None:  # the saved C stack of each blocked tasklet, after the RSS
            stack_saved = stack_saved_reader()
            t = ch.queue
            while t is not None:
                saved.append(stack_saved(t._cont))
                t = t.next
        for _ in range(n + 1000):
            ch.send(None)
        return per

    def switch_floor(n):
        from _continuation import continulet

        def body(c):
            back = c.switch
            while True:
                back()

        c = continulet(body)
        into = c.switch
        for _ in range(n):
            into()

    def busy_loop(n):
        x = 0
        for i in range(n):
            x += i
        return x

    def preempt(n):
        stackless.tasklet(busy_loop)(n)
        assert stackless.run(10**12) is None  # a budget that never runs out

    def busy(n):
        stackless.tasklet(busy_loop)(n)
        stackless.run()

    return {"pingpong": pingpong, "schedule": schedule, "create_run": create_run, "blocked": blocked,
            "preempt": preempt, "busy": busy, "switch_floor": switch_floor}


def stackless_rows():
    ops = stackless_ops()
    saved = [] if stack_saved_reader() else None
    rows = {
        "mode": core_mode(),
        "pingpong": best(ops["pingpong"], N),
        "schedule": best(ops["schedule"], N),
        "create_run": best(ops["create_run"], N // 2),
        "blocked": ops["blocked"](N_BLOCKED, saved),
        "preempt": best(ops["preempt"], N),
        "busy": best(ops["busy"], N),
        "switch_floor": best(ops["switch_floor"], N),
    }
    if saved:
        rows["saved_stack"] = median(saved)
    return rows


def instructions():
    """(Ir(n) - Ir(0)) / n under callgrind, for each core: stable on a loaded machine."""
    import tempfile

    n = {"pingpong": 3000, "schedule": 6000, "create_run": 2000, "switch_floor": 3000}
    print("| operation (instructions, callgrind) | native core | pure-Python core | ratio |")
    print("|---|---|---|---|")
    for op, k in n.items():
        res = []
        for env in ({}, {"CONTINULET_PURE": "1"}):
            e = dict(os.environ)
            e.pop("CONTINULET_PURE", None)
            e.update(env)
            irs = []
            for count in (0, k):
                with tempfile.NamedTemporaryFile() as out:
                    r = subprocess.run(
                        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out.name,
                         sys.executable, os.path.abspath(__file__), "--op", op, str(count)],
                        env=e, check=True, capture_output=True, text=True)
                irs.append(int(r.stderr.split("refs:")[-1].split()[0].replace(",", "")))
            res.append((irs[1] - irs[0]) / k)
        print("| %s | %s | %s | %.1fx |" % (op, "{:,.0f}".format(res[0]), "{:,.0f}".format(res[1]),
                                         res[1] / res[0]))


def asyncio_rows():
    import asyncio

    async def pingpong(n):
        a, b = asyncio.Queue(), asyncio.Queue()

        async def pong():
            for _ in range(n):
                await b.put(await a.get())

        task = asyncio.ensure_future(pong())
        for i in range(n):
            await a.put(i)
            await b.get()
        await task

    def run_pingpong(n):
        asyncio.run(pingpong(n))

    async def blocked(n):
        q = asyncio.Queue()
        gc.collect()
        before = rss()
        tasks = [asyncio.ensure_future(q.get()) for _ in range(n)]
        await asyncio.sleep(0)
        per = (rss() - before) / n
        for _ in range(n):
            q.put_nowait(None)
        await asyncio.gather(*tasks)
        return per

    return {
        "mode": "asyncio",
        # one message = a put and a get in each direction halved: per one-way message
        "pingpong": best(run_pingpong, N // 10) / 2,
        "blocked": asyncio.run(blocked(N_BLOCKED)),
    }


def smoke():
    """Every operation once with small counts, in this process's mode: ci/test runs it so that
    the benchmark keeps working (nothing is timed or compared)."""
    ops = stackless_ops()
    for op in ("pingpong", "schedule", "create_run", "preempt", "busy", "switch_floor"):
        ops[op](2000)
    saved = [] if stack_saved_reader() else None
    ops["blocked"](200, saved)
    line = "stackless_bench --smoke (%s core): every operation ran" % core_mode()
    if saved is not None:
        assert len(saved) == 1200 and min(saved) > 0, (len(saved), min(saved, default=None))
        line += "; saved stack of a blocked tasklet %d B (median)" % median(saved)
    print(line)


def one():
    if "--asyncio" in sys.argv:
        return asyncio_rows()
    return stackless_rows()


def main():
    if "--op" in sys.argv:
        i = sys.argv.index("--op")
        count = int(sys.argv[i + 2])
        if count:
            stackless_ops()[sys.argv[i + 1]](count)
        else:
            stackless_ops()
        return
    if "--smoke" in sys.argv:
        smoke()
        return
    if "--instructions" in sys.argv:
        instructions()
        return
    if "--one" in sys.argv:
        print(json.dumps(one()))
        return
    rows = {}
    me = [sys.executable, os.path.abspath(__file__), "--one"]
    for mode, env, extra in [("native", {}, []), ("pure", {"CONTINULET_PURE": "1"}, []),
                             ("asyncio", {}, ["--asyncio"])]:
        e = dict(os.environ)
        e.pop("CONTINULET_PURE", None)
        e.update(env)
        out = subprocess.run(me + extra, env=e, check=True, capture_output=True, text=True).stdout
        rows[mode] = json.loads(out.strip().splitlines()[-1])
    nat, pure, aio = rows["native"], rows["pure"], rows["asyncio"]
    if nat["mode"] != "native":
        print("(no native core in this interpreter: the 'native' column is the pure core)")
    print("CPython %s, ns per operation (best of %d), bytes per blocked tasklet" %
          (sys.version.split()[0], REPEATS))
    print()
    print("| operation | native core | pure-Python core | asyncio | native vs pure | native vs asyncio |")
    print("|---|---|---|---|---|---|")

    def row(name, key, fmt="{:,.0f}"):
        a, p = nat[key], pure[key]
        q = aio.get(key)
        print("| %s | %s | %s | %s | %.1fx | %s |" % (
            name, fmt.format(a), fmt.format(p), fmt.format(q) if q is not None else "—",
            p / a, "%.1fx" % (q / a) if q is not None else "—"))

    row("channel ping-pong, ns/message", "pingpong")
    row("schedule() round trip, ns", "schedule")
    row("tasklet create+run, ns", "create_run")
    row("memory per blocked tasklet, bytes", "blocked")
    row("busy-loop iteration under run(timeout), ns", "preempt")
    row("busy-loop iteration under run() (no budget), ns", "busy")

    print()
    print("Against C Stackless 3.7 (the issue's figures, measured on these machines), native core:")
    print()
    print("| | this run | C Stackless 3.7 | ratio |")
    print("|---|---|---|---|")
    for name, value, target in [
            ("channel ping-pong, ns/message", nat["pingpong"], 178),
            ("  its floor: the message's two switches alone (continulet round trip), ns",
             nat["switch_floor"], 178),
            ("schedule() round trip, ns", nat["schedule"], 163),
            ("memory per blocked tasklet, bytes", nat["blocked"], 610),
            ("  its floor: the C stack a blocked tasklet keeps, bytes", nat.get("saved_stack"), 610)]:
        if value is None:  # (not measurable without our _continuation)
            continue
        print("| %s | %s | %s | %.1fx |" % (name, "{:,.0f}".format(value), target, value / target))


if __name__ == "__main__":
    main()
