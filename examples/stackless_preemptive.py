"""Preemptive scheduling: run(timeout=N) interrupts a busy tasklet after N instructions."""

import stackless

progress = {"A": 0, "B": 0}


def busy(name):
    while True:  # never yields on its own
        progress[name] += 1


a = stackless.tasklet(busy)("A")
b = stackless.tasklet(busy)("B")
for rnd in range(4):
    victim = stackless.run(timeout=1000)
    print("interrupted", "A" if victim is a else "B", "- still alive:", victim.alive)
    if rnd < 3:
        victim.insert()  # back to the end of the queue: round robin
print("both made progress:", progress["A"] > 0 and progress["B"] > 0)
a.kill()  # kill() switches to the victim; the other one is not in the queue any more
b.kill()
print("killed:", not a.alive and not b.alive)
