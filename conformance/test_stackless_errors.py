"""Exact error types and messages of Stackless 3.x (taskletobject.c, channelobject.c, scheduling.c)."""

import pytest

from conftest import IMPL, differs

stackless = pytest.importorskip("stackless")


def _msg(excinfo):
    return str(excinfo.value)


@differs("pypy-oracle", reason="lib_pypy message: 'tasklet function must be a callable'")
def test_bind_not_callable():
    with pytest.raises(TypeError) as e:
        stackless.tasklet(5)
    assert _msg(e) == "tasklet function must be a callable or None"


@differs("pypy-oracle", reason="lib_pypy bind() takes no args")
def test_bind_args_not_tuple():
    with pytest.raises(TypeError) as e:
        stackless.tasklet(len, [1])
    assert _msg(e) == "tasklet args must be a tuple or None"


@differs("pypy-oracle", reason="lib_pypy bind() takes no kwargs")
def test_bind_kwargs_not_dict():
    with pytest.raises(TypeError) as e:
        stackless.tasklet(len, (), [("a", 1)])
    assert _msg(e) == "tasklet kwargs must be a dictionary or None"


@differs("pypy-oracle", reason="lib_pypy bind() does not check the tasklet state")
def test_bind_scheduled():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(RuntimeError) as e:
        t.bind(len)
    assert _msg(e) == "tasklet is scheduled"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy bind() does not check the tasklet state")
def test_bind_current():
    got = []

    def f():
        with pytest.raises(RuntimeError) as e:
            stackless.getcurrent().bind(len)
        got.append(_msg(e))

    stackless.tasklet(f)()
    stackless.run()
    assert got == ["can't (re)bind the current tasklet"]


@differs("pypy-oracle", reason="lib_pypy bind(None) raises TypeError")
def test_unbind_main():
    got = []

    def f():
        with pytest.raises(RuntimeError) as e:
            stackless.getmain().bind(None)
        got.append(_msg(e))

    stackless.tasklet(f)()
    stackless.run()
    assert got == ["can't unbind the main tasklet"]


@differs("pypy-oracle", reason="lib_pypy: TypeError('cframe function must be callable')")
def test_setup_alive():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(RuntimeError) as e:
        t.setup()
    assert _msg(e) == "tasklet is alive"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy: TypeError('cframe function must be callable')")
def test_setup_unbound():
    with pytest.raises(RuntimeError) as e:
        stackless.tasklet().setup()
    assert _msg(e) == "the tasklet was not bound to a function"


def test_insert_dead():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    with pytest.raises(RuntimeError) as e:
        t.insert()
    assert _msg(e) == "You cannot run an unbound(dead) tasklet"


def test_run_dead():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    with pytest.raises(RuntimeError) as e:
        t.run()
    assert _msg(e) == "You cannot run an unbound(dead) tasklet"


def test_insert_blocked():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError) as e:
        t.insert()
    assert _msg(e) == "You cannot run a blocked tasklet"
    ch.send(None)


def test_remove_blocked():
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError) as e:
        t.remove()
    assert _msg(e) == "You cannot remove a blocked tasklet."
    ch.send(None)


def test_remove_current():
    with pytest.raises(RuntimeError) as e:
        stackless.getcurrent().remove()
    assert _msg(e) == "The current tasklet cannot be removed."


@differs("pypy-oracle", reason="lib_pypy has no throw()")
def test_throw_dead():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    with pytest.raises(RuntimeError) as e:
        t.throw(ValueError)
    assert _msg(e) == "You cannot throw to a dead tasklet"


@differs("pypy-oracle", reason="lib_pypy has no throw()")
def test_throw_taskletexit_to_dead_is_noop():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    assert t.throw(stackless.TaskletExit) is None


@differs("pypy-oracle", reason="lib_pypy has no throw()")
def test_throw_bad_traceback():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(TypeError) as e:
        t.throw(ValueError, None, 5)
    assert _msg(e) == "third argument must be a traceback object"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy has no throw()")
def test_throw_instance_with_value():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(TypeError) as e:
        t.throw(ValueError("a"), "b")
    assert _msg(e) == "instance exception may not have a separate value"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy has no throw()")
def test_throw_not_an_exception():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(TypeError) as e:
        t.throw(5)
    assert _msg(e) == "exceptions must be classes, or instances, not int"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy has no raise_exception()")
def test_raise_exception_not_a_class():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(TypeError) as e:
        t.raise_exception(5)
    assert _msg(e) == "tasklet.raise_exception needs Exception or string subclass as first parameter"
    stackless.run()


@differs("pypy-oracle", reason="lib_pypy send_exception calls the class blindly")
def test_send_exception_not_a_class():
    with pytest.raises(TypeError) as e:
        stackless.channel().send_exception(5)
    assert _msg(e) == "channel.send_exception needs Exception or string subclass as first parameter"


@differs("pypy-oracle", reason="lib_pypy has no set_atomic")
def test_set_atomic_needs_int():
    with pytest.raises(TypeError) as e:
        stackless.getcurrent().set_atomic("yes")
    assert _msg(e) == "set_atomic needs exactly one bool or integer"


@differs("pypy-oracle", reason="lib_pypy has no set_ignore_nesting")
def test_set_ignore_nesting_needs_int():
    with pytest.raises(TypeError) as e:
        stackless.getcurrent().set_ignore_nesting(None)
    assert _msg(e) == "set_ignore_nesting needs exactly one bool or integer"


@differs("pypy-oracle", reason="lib_pypy has no block_trap")
def test_block_trap_needs_int():
    with pytest.raises(TypeError) as e:
        stackless.getcurrent().block_trap = "x"
    assert _msg(e) == "block_trap must be set to a bool or integer"


@differs("pypy-oracle", reason="lib_pypy has no block_trap")
def test_block_trap_message():
    ch = stackless.channel()
    cur = stackless.getcurrent()
    cur.block_trap = True
    try:
        with pytest.raises(RuntimeError) as e:
            ch.receive()
    finally:
        cur.block_trap = False
    assert _msg(e) == "this tasklet does not like to be blocked."


@differs("pypy-oracle", reason="lib_pypy close() does not stop blocking")
def test_closed_channel_message():
    ch = stackless.channel()
    ch.close()
    with pytest.raises(ValueError) as e:
        ch.send(1)
    assert _msg(e) == "Send/receive operation on a closed channel"


@differs("pypy-oracle", reason="lib_pypy accepts any preference value")
def test_preference_needs_int():
    with pytest.raises(TypeError) as e:
        stackless.channel().preference = "high"
    assert _msg(e) == "preference must be set to an integer"


@differs("pypy-oracle", reason="lib_pypy accepts any schedule_all value")
def test_schedule_all_needs_int():
    with pytest.raises(TypeError) as e:
        stackless.channel().schedule_all = "x"
    assert _msg(e) == "preference must be set to a bool or integer"  # sic, as in C Stackless


@differs("pypy-oracle", reason="lib_pypy does not check callbacks")
def test_channel_callback_must_be_callable():
    with pytest.raises(TypeError) as e:
        stackless.set_channel_callback(5)
    assert _msg(e) == "channel callback must be callable"


@differs("pypy-oracle", reason="lib_pypy does not check callbacks")
def test_schedule_callback_must_be_callable():
    with pytest.raises(TypeError) as e:
        stackless.set_schedule_callback(5)
    assert _msg(e) == "schedule callback must be callable"


@differs("pypy-oracle", reason="lib_pypy does not guard against recursion from callbacks")
def test_recursive_channel_callback():
    ch = stackless.channel()
    errors = []

    def cb(chan, task, sending, willblock):
        if chan is ch:
            try:
                stackless.channel().send(1)
            except RuntimeError as e:
                errors.append(str(e))

    stackless.tasklet(ch.receive)()
    stackless.run()
    stackless.set_channel_callback(cb)
    ch.send(1)
    stackless.set_channel_callback(None)
    assert errors == ["Recursive channel call due to callbacks!"]


@differs("pypy-oracle", reason="lib_pypy: RuntimeError('No runnable tasklets left.')")
def test_deadlock_main_receive():
    with pytest.raises(RuntimeError) as e:
        stackless.channel().receive()
    assert _msg(e) == "Deadlock: the last runnable tasklet cannot be blocked."
    assert stackless.getcurrent().scheduled and stackless.getruncount() == 1


@differs("pypy-oracle", reason="lib_pypy: RuntimeError('No runnable tasklets left.')")
def test_deadlock_main_send():
    ch = stackless.channel()
    with pytest.raises(RuntimeError) as e:
        ch.send(1)
    assert _msg(e) == "Deadlock: the last runnable tasklet cannot be blocked."
    assert ch.balance == 0


@differs("pypy-oracle", reason="lib_pypy hangs or reports 'No runnable tasklets left.'")
def test_main_blocked_last_tasklet_ends_receiving():
    ch = stackless.channel()
    ran = []
    stackless.tasklet(lambda: ran.append(1))()
    with pytest.raises(RuntimeError) as e:
        ch.receive()
    assert ran == [1]
    assert _msg(e) == "the main tasklet is receiving without a sender available."
    assert ch.balance == 0


@differs("pypy-oracle", reason="lib_pypy hangs or reports 'No runnable tasklets left.'")
def test_main_blocked_last_tasklet_ends_sending():
    ch = stackless.channel()
    stackless.tasklet(lambda: None)()
    with pytest.raises(RuntimeError) as e:
        ch.send(1)
    assert _msg(e) == "the main tasklet is sending without a receiver available."


@differs("pypy-oracle", reason="lib_pypy hangs or reports 'No runnable tasklets left.'")
def test_main_blocked_last_tasklet_blocks_too():
    # the last tasklet gets the deadlock error; uncaught, it reaches main
    ch, other = stackless.channel(), stackless.channel()
    stackless.tasklet(other.receive)()
    with pytest.raises(RuntimeError) as e:
        ch.receive()
    assert _msg(e) == "Deadlock: the last runnable tasklet cannot be blocked."
    assert (ch.balance, other.balance) == (0, 0)


@differs("pypy-oracle", reason="lib_pypy has no get_thread_info")
def test_get_thread_info_unknown_thread():
    with pytest.raises(RuntimeError) as e:
        stackless.get_thread_info(-12345)
    assert _msg(e) == "Thread id not found"


@differs("pypy-oracle", reason="lib_pypy has no bind_thread")
def test_bind_thread_bad_thread():
    with pytest.raises(ValueError) as e:
        stackless.tasklet(len).bind_thread(-12345)
    assert _msg(e) == "bad thread"
