"""One scheduler per thread; a channel connects tasklets in two threads."""

import threading

import stackless

requests, replies = stackless.channel(), stackless.channel()


server_main = []


def server():
    # runs in its own thread, with its own main tasklet and run queue
    server_main.append(stackless.getmain())
    for _ in range(3):
        n = requests.receive()  # blocks this thread (GIL released) until main sends
        replies.send(n * n)


th = threading.Thread(target=server)
th.start()
for n in (2, 3, 4):
    requests.send(n)
    print("%d squared is %d" % (n, replies.receive()))
th.join()
print("server thread had its own main tasklet:", server_main[0] is not stackless.getmain())
try:
    requests.receive()  # nobody left who could send: Stackless reports the deadlock
except RuntimeError as e:
    print("RuntimeError:", e)
