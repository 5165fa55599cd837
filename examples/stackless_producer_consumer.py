"""Producer/consumer over a channel: the receiver is preferred, so each value is consumed at once."""

import stackless


def producer(ch, n):
    for i in range(n):
        print("producer: sending", i)
        ch.send(i)
    ch.send_exception(StopIteration)  # ends the consumer's for-loop


def consumer(ch):
    for item in ch:
        print("consumer: got", item)
    print("consumer: done")


ch = stackless.channel()
stackless.tasklet(consumer)(ch)
stackless.tasklet(producer)(ch, 3)
stackless.run()
print("runnable tasklets left:", stackless.getruncount() - 1)
