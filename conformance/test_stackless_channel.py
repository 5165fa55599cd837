"""stackless.channel: rendezvous, balance, preference, close, iteration, callbacks (SPEC §3.3)."""

import sys

import pytest

from conftest import IMPL, differs  # noqa: F401

stackless = pytest.importorskip("stackless")


def _recv_into(ch, out):
    out.append(ch.receive())


def test_send_to_waiting_receiver():
    ch = stackless.channel()
    got = []
    stackless.tasklet(_recv_into)(ch, got)
    stackless.run()
    assert ch.balance == -1
    ch.send("v")
    assert got == ["v"]
    assert ch.balance == 0


def test_receive_from_waiting_sender():
    ch = stackless.channel()
    stackless.tasklet(ch.send)("w")
    stackless.run()
    assert ch.balance == 1
    assert ch.receive() == "w"
    assert ch.balance == 0


def test_main_receive_runs_other_tasklets_until_value():
    ch = stackless.channel()
    t = stackless.tasklet(ch.send)(3)
    assert ch.receive() == 3
    # the receiver is preferred: the sender was requeued behind main and has not finished yet
    assert stackless.getruncount() == 2 and t.alive
    stackless.run()
    assert not t.alive


def test_send_returns_none():
    ch = stackless.channel()
    stackless.tasklet(ch.receive)()
    stackless.run()
    assert ch.send(1) is None


def test_values_are_passed_by_identity():
    ch = stackless.channel()
    obj = object()
    got = []
    stackless.tasklet(_recv_into)(ch, got)
    stackless.run()
    ch.send(obj)
    assert got[0] is obj


def test_balance_counts_waiting_senders():
    ch = stackless.channel()
    for i in range(3):
        stackless.tasklet(ch.send)(i)
    stackless.run()
    assert ch.balance == 3
    assert [ch.receive() for _ in range(3)] == [0, 1, 2]
    assert ch.balance == 0


def test_balance_counts_waiting_receivers():
    ch = stackless.channel()
    got = []
    for _ in range(2):
        stackless.tasklet(_recv_into)(ch, got)
    stackless.run()
    assert ch.balance == -2
    ch.send("a")
    ch.send("b")
    stackless.run()
    assert got == ["a", "b"]


@differs("pypy-oracle", reason="lib_pypy channel.queue is a deque, not the first blocked tasklet")
def test_queue_is_first_blocked_tasklet():
    ch = stackless.channel()
    assert ch.queue is None
    a = stackless.tasklet(ch.receive)()
    stackless.tasklet(ch.receive)()
    stackless.run()
    assert ch.queue is a
    ch.send(1)
    ch.send(2)
    assert ch.queue is None
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy blocked is 1/-1, Stackless 3.x returns a bool")
def test_blocked_flag_is_bool_while_waiting():
    ch = stackless.channel()
    r = stackless.tasklet(ch.receive)()
    s = stackless.tasklet(stackless.channel().send)(1)
    stackless.run()
    assert r.blocked is True and s.blocked is True
    assert r.scheduled is True and r.paused is False
    ch.send(0)
    assert r.blocked is False
    s.kill()


def test_tempval_cleared_after_transfer():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    ch.send("x")
    assert stackless.getcurrent().tempval is None


@differs("pypy-oracle", reason="lib_pypy send_exception(exc, msg) takes exactly one message argument")
def test_send_exception_with_args():
    ch = stackless.channel()
    got = []

    def r():
        try:
            ch.receive()
        except ValueError as e:
            got.append(e.args)

    stackless.tasklet(r)()
    stackless.run()
    ch.send_exception(ValueError, 1, 2)
    assert got == [(1, 2)]


@differs("pypy-oracle", reason="lib_pypy wraps the exception instance in a second one: args == (KeyError('k'),)")
def test_send_exception_single_arg():
    ch = stackless.channel()
    got = []

    def r():
        try:
            ch.receive()
        except KeyError as e:
            got.append(e.args)

    stackless.tasklet(r)()
    stackless.run()
    ch.send_exception(KeyError, "k")
    assert got == [("k",)]


@differs("pypy-oracle", reason="lib_pypy has no send_throw")
def test_send_throw_instance():
    ch = stackless.channel()
    err = IndexError("i")
    got = []

    def r():
        try:
            ch.receive()
        except IndexError as e:
            got.append(e)

    stackless.tasklet(r)()
    stackless.run()
    ch.send_throw(err)
    assert got == [err]


@differs("pypy-oracle", reason="lib_pypy has no send_throw")
def test_send_throw_class_value_traceback():
    try:
        raise OSError("o")
    except OSError:
        tb = sys.exc_info()[2]
    got = []

    def r():
        try:
            ch.receive()
        except OSError as e:
            got.append((e.args, _in_chain(tb, e.__traceback__)))

    ch = stackless.channel()
    stackless.tasklet(r)()
    stackless.run()
    ch.send_throw(OSError, ("o",), tb)
    assert got == [(("o",), True)]


def _in_chain(tb, chain):
    while chain is not None:
        if chain is tb:
            return True
        chain = chain.tb_next
    return False


def test_sending_a_bomb_raises_in_receiver():
    ch = stackless.channel()
    got = []

    def r():
        try:
            ch.receive()
        except ZeroDivisionError as e:
            got.append(str(e))

    stackless.tasklet(r)()
    stackless.run()
    ch.send(stackless.bomb(ZeroDivisionError, ZeroDivisionError("z")))
    assert got == ["z"]


@differs("pypy-oracle", reason="lib_pypy send_sequence returns None")
def test_send_sequence_returns_count():
    ch = stackless.channel()
    got = []

    def r():
        for _ in range(4):
            got.append(ch.receive())

    stackless.tasklet(r)()
    assert ch.send_sequence(iter("abcd")) == 4
    assert got == list("abcd")


@differs("pypy-oracle", reason="lib_pypy channels are not iterable")
def test_iteration_ends_with_stopiteration_bomb():
    ch = stackless.channel()

    def p():
        ch.send_sequence([1, 2, 3])
        ch.send_exception(StopIteration)

    stackless.tasklet(p)()
    assert list(ch) == [1, 2, 3]


@differs("pypy-oracle", reason="lib_pypy channels are not iterable")
def test_iteration_stops_on_closed_channel():
    # senders blocked before close() are still drained; then iteration stops instead of blocking
    ch = stackless.channel()
    stackless.tasklet(ch.send)(1)
    stackless.tasklet(ch.send)(2)
    stackless.run()
    ch.close()
    assert [x for x in ch] == [1, 2]
    assert ch.closed


def test_close_and_open_flags():
    ch = stackless.channel()
    assert (ch.closing, ch.closed) == (False, False)
    ch.close()
    assert (ch.closing, ch.closed) == (True, True)
    ch.open()
    assert (ch.closing, ch.closed) == (False, False)


def test_closing_channel_with_waiting_sender_is_not_closed():
    ch = stackless.channel()
    stackless.tasklet(ch.send)(1)
    stackless.run()
    ch.close()
    assert (ch.closing, ch.closed) == (True, False)
    assert ch.receive() == 1
    assert ch.closed is True


@differs("pypy-oracle", reason="lib_pypy close() does not stop send/receive (SPEC §3.4)")
def test_closed_channel_refuses_to_block():
    ch = stackless.channel()
    ch.close()
    with pytest.raises(ValueError):
        ch.receive()
    with pytest.raises(ValueError):
        ch.send(1)
    assert ch.balance == 0
    assert stackless.getcurrent().scheduled


def test_preference_default_is_prefer_receiver():
    ch = stackless.channel()
    assert ch.preference == -1
    ch.preference = 1
    assert ch.preference == 1


@differs("pypy-oracle", reason="lib_pypy stores any preference value unchanged")
def test_preference_is_clamped_to_sign():
    ch = stackless.channel()
    ch.preference = 7
    assert ch.preference == 1
    ch.preference = -3
    assert ch.preference == -1
    ch.preference = 0
    assert ch.preference == 0


def test_schedule_all_default_off():
    ch = stackless.channel()
    assert not ch.schedule_all
    ch.schedule_all = 1
    assert ch.schedule_all


def test_receiver_preferred_sender_requeued_last():
    # default preference -1: sending to a waiting receiver switches to it at once
    ch = stackless.channel()
    log = []

    def r():
        log.append(("got", ch.receive()))

    stackless.tasklet(r)()
    stackless.run()
    ch.send(1)
    log.append("sender continues")
    assert log == [("got", 1), "sender continues"]


def test_sender_preferred_keeps_running():
    ch = stackless.channel()
    ch.preference = 1
    log = []

    def r():
        log.append(("got", ch.receive()))

    stackless.tasklet(r)()
    stackless.run()
    ch.send(1)
    log.append("sender continues")
    stackless.run()
    assert log == ["sender continues", ("got", 1)]


def test_no_preference_keeps_running():
    ch = stackless.channel()
    ch.preference = 0
    log = []

    def r():
        log.append(("got", ch.receive()))

    stackless.tasklet(r)()
    stackless.run()
    ch.send(1)
    log.append("sender continues")
    stackless.run()
    assert log == ["sender continues", ("got", 1)]


@differs("pypy-oracle", reason="lib_pypy has no block_trap")
def test_block_trap_only_when_blocking():
    ch = stackless.channel()
    stackless.tasklet(ch.send)(1)
    stackless.run()
    cur = stackless.getcurrent()
    cur.block_trap = True
    try:
        assert ch.receive() == 1  # does not block: allowed
        with pytest.raises(RuntimeError):
            ch.receive()
    finally:
        cur.block_trap = False
    assert ch.balance == 0 and cur.scheduled


def test_channel_callback_arguments():
    ch = stackless.channel()
    calls = []
    assert stackless.set_channel_callback(lambda *a: calls.append(a)) is None
    r = stackless.tasklet(ch.receive)()
    stackless.run()
    ch.send(9)
    stackless.set_channel_callback(None)
    main = stackless.getmain()
    assert calls == [(ch, r, 0, 1), (ch, main, 1, 0)]


@differs("pypy-oracle", reason="lib_pypy set_channel_callback returns None")
def test_set_channel_callback_returns_previous():
    def a(*args):
        pass

    assert stackless.set_channel_callback(a) is None
    assert stackless.get_channel_callback() is a
    assert stackless.set_channel_callback(None) is a
    assert stackless.get_channel_callback() is None


def test_channel_subclass():
    class Named(stackless.channel):
        def __init__(self, name):
            super().__init__()
            self.name = name

    ch = Named("c")
    stackless.tasklet(ch.send)(5)
    assert ch.receive() == 5
    assert ch.name == "c"


def test_kill_blocked_sender_by_main_then_channel_usable():
    ch = stackless.channel()
    t = stackless.tasklet(ch.send)("lost")
    stackless.run()
    t.kill()
    stackless.tasklet(ch.send)("next")
    assert ch.receive() == "next"
