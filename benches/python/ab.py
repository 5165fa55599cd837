"""A/B timing of two builds in the same minutes (a shared VM's speed drifts between runs):

    python benches/python/ab.py OLD_PYTHON NEW_PYTHON [ROUNDS]

Each interpreter is a venv with a build of ours installed (e.g. one made from an older commit
with `python -m venv /tmp/old && /tmp/old/bin/pip install . ./packaging/greenlet` in a `git
worktree` of it).  For each operation the two run as alternating subprocesses, ROUNDS (5)
each; a subprocess prints the best of 7 `timeit` repeats.  Prints every figure, then the best
and the median of each side, in ns per operation:

    greenlet: greenlet(f).switch()  (create, start, finish), 50,000 per repeat
    tasklet:  tasklet(f)() x 1,000, stackless.run()  (create, run), per tasklet, 50 per repeat
    schedule: two tasklets calling stackless.schedule() 20,000 times each, per call
    pingpong: channel send/receive between two tasklets, 20,000 messages, per message

    python benches/python/ab.py OLD_PYTHON NEW_PYTHON ROUNDS greenlet,schedule   (a choice)
"""
import statistics
import subprocess
import sys
import timeit


def measure(what):
    if what == "greenlet":
        import greenlet

        f = lambda: 1  # noqa: E731
        G = greenlet.greenlet

        def op():
            G(f).switch()

        n, per = 50000, 1
    elif what == "tasklet":
        import stackless

        def f():
            pass

        T = stackless.tasklet

        def op():
            for _ in range(1000):
                T(f)()
            stackless.run()

        n, per = 50, 1000
    elif what == "schedule":
        import stackless

        def turn():
            sched = stackless.schedule
            for _ in range(20000):
                sched()

        def op():
            stackless.tasklet(turn)()
            stackless.tasklet(turn)()
            stackless.run()

        n, per = 1, 40000
    else:
        import stackless

        def op():
            ch = stackless.channel()

            def ping():
                send = ch.send
                for i in range(20000):
                    send(i)

            def pong():
                receive = ch.receive
                for _ in range(20000):
                    receive()

            stackless.tasklet(ping)()
            stackless.tasklet(pong)()
            stackless.run()

        n, per = 1, 20000
    return min(timeit.repeat(op, number=n, repeat=7)) / n / per * 1e9


def main():
    if sys.argv[1] == "--one":
        print("%.0f" % measure(sys.argv[2]))
        return
    old, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    whats = sys.argv[4].split(",") if len(sys.argv) > 4 else ["greenlet", "tasklet", "schedule", "pingpong"]
    for what in whats:
        got = {old: [], new: []}
        for _ in range(rounds):
            for py in (old, new):
                out = subprocess.run([py, __file__, "--one", what], check=True,
                                     capture_output=True, text=True).stdout
                got[py].append(int(out))
        for side, py in (("old", old), ("new", new)):
            v = got[py]
            print("%-8s %s %s  best %d  median %d" % (what, side, v, min(v), statistics.median(v)))


if __name__ == "__main__":
    main()
