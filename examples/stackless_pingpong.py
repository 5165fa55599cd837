"""Two tasklets bounce a counter over two channels; the schedule callback shows every switch."""

import stackless

names = {}


def ping(out, back, rounds):
    for _ in range(rounds):
        out.send("ping")
        print("ping got", back.receive())


def pong(inp, out, rounds):
    for i in range(rounds):
        print("pong got", inp.receive())
        out.send("pong %d" % i)


a, b = stackless.channel(), stackless.channel()
names[stackless.getmain()] = "main"
names[stackless.tasklet(ping)(a, b, 2)] = "ping"
names[stackless.tasklet(pong)(a, b, 2)] = "pong"
stackless.set_schedule_callback(lambda prev, nxt: print("  [%s -> %s]" % (names[prev], names[nxt])))
stackless.run()
stackless.set_schedule_callback(None)
