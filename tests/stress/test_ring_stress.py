"""The SPSC ring under real concurrency: a jitted producer and a jitted consumer in two threads
(nogil), and in two processes sharing a ring file.

Every value is a sequence number, so the consumer checks each one is exactly the previous + 1:
a lost, duplicated, reordered or torn slot shows as an error.

Nothing blocks forever: each jitted loop gives up after ``MAX_IDLE`` fruitless polls in a row
and returns to Python, which checks a deadline (and, across processes, that the peer is alive)
before going back in. A bug fails the test instead of hanging it.
"""
from __future__ import annotations

import multiprocessing
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time

import numba
import numpy as np
import pytest

from chronicle_async.queue.ring import SpscRing
from chronicle_async.hot import ring as RG
from chronicle_async.hot.atomics import (
    address_of,
    cpu_relax,
    load_plain_i64_at,
    store_plain_i64_at,
)

MAX_IDLE = 200_000  # polls of an empty / full ring before a jitted loop returns to check the deadline
DEADLINE = 60.0  # seconds: far beyond a healthy run (a second or two); only a bug gets here

THREAD_COUNT = 2_000_000
PROCESS_COUNT = 1_000_000
CAPACITY = 1024
SLOT = 8


# -- jitted loops ------------------------------------------------------------------------------
# Each takes a small int64 ``state`` array so it can return to Python (to check the deadline)
# and resume where it stopped.


@numba.njit(nogil=True)
def produce_array_form(ring, state, count, max_idle):
    """Push state[0]..count-1 with the array ``try_push``; returns True when all are in."""
    src = np.zeros(SLOT, np.uint8)
    value = src.view(np.int64)
    i = state[0]
    idle = 0
    while i < count:
        value[0] = i
        if RG.try_push(ring, src):
            i += 1
            idle = 0
        else:
            idle += 1
            if idle >= max_idle:
                break
            cpu_relax()
    state[0] = i
    return i >= count


@numba.njit(nogil=True)
def consume_array_form(ring, state, count, max_idle):
    """Pop with the array ``try_pop`` until ``count`` values arrived.

    state = [received, previous value, errors, index of first error (-1: none), value there].
    """
    dst = np.zeros(SLOT, np.uint8)
    value = dst.view(np.int64)
    received, prev, errors = state[0], state[1], state[2]
    idle = 0
    while received < count:
        if RG.try_pop(ring, dst):
            v = value[0]
            if v != prev + 1:
                if errors == 0:
                    state[3] = received
                    state[4] = v
                errors += 1
            prev = v
            received += 1
            idle = 0
        else:
            idle += 1
            if idle >= max_idle:
                break
            cpu_relax()
    state[0], state[1], state[2] = received, prev, errors
    return received >= count


@numba.njit(nogil=True)
def produce_in_place(ring, state, count, max_idle):
    """Push state[0]..count-1 with the zero-copy ``claim_at`` / ``publish_at``."""
    r = address_of(ring, 0)
    i = state[0]
    idle = 0
    while i < count:
        slot = RG.claim_at(r)
        if slot != 0:
            store_plain_i64_at(slot, i)
            RG.publish_at(r)
            i += 1
            idle = 0
        else:
            idle += 1
            if idle >= max_idle:
                break
            cpu_relax()
    state[0] = i
    return i >= count


@numba.njit(nogil=True)
def consume_in_place(ring, state, count, max_idle):
    """``consume_array_form`` with the zero-copy ``peek_at`` / ``consume_at``."""
    r = address_of(ring, 0)
    received, prev, errors = state[0], state[1], state[2]
    idle = 0
    while received < count:
        slot = RG.peek_at(r)
        if slot != 0:
            v = load_plain_i64_at(slot)
            RG.consume_at(r)
            if v != prev + 1:
                if errors == 0:
                    state[3] = received
                    state[4] = v
                errors += 1
            prev = v
            received += 1
            idle = 0
        else:
            idle += 1
            if idle >= max_idle:
                break
            cpu_relax()
    state[0], state[1], state[2] = received, prev, errors
    return received >= count


def new_consumer_state() -> np.ndarray:
    return np.array([0, -1, 0, -1, 0], np.int64)


def describe(state: np.ndarray, count: int) -> str:
    received, prev, errors, first_at, first_value = state.tolist()
    s = f"received {received} of {count} (last value {prev}), {errors} out-of-sequence values"
    if errors:
        s += f"; the first at message {first_at}: {first_value}"
    return s


def run_until_done(step, deadline: float, alive=lambda: True) -> bool:
    """Call the jitted ``step()`` until it reports done, the deadline passes or the peer dies."""
    while not step():
        if time.monotonic() > deadline or not alive():
            return step()  # one last look: the peer may have finished just now
    return True


# -- threads -----------------------------------------------------------------------------------


def test_jitted_producer_and_consumer_threads_pass_two_million_values_in_order():
    with SpscRing(CAPACITY, SLOT) as ring:
        buf = ring.buffer
        # compile both loops first, so the deadline measures the exchange, not numba
        produce_array_form(buf, np.array([0], np.int64), 0, 1)
        consume_array_form(buf, new_consumer_state(), 0, 1)

        prod_state, cons_state = np.array([0], np.int64), new_consumer_state()
        results: dict[str, object] = {}
        deadline = time.monotonic() + DEADLINE

        def side(name, fn, state):
            try:
                results[name] = run_until_done(lambda: fn(buf, state, THREAD_COUNT, MAX_IDLE), deadline)
            except BaseException as e:  # noqa: BLE001 (reported by the test thread below)
                results[name] = e

        threads = [
            threading.Thread(target=side, args=("producer", produce_array_form, prod_state), daemon=True),
            threading.Thread(target=side, args=("consumer", consume_array_form, cons_state), daemon=True),
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=DEADLINE + 10)
        elapsed = time.monotonic() - t0
        assert not any(t.is_alive() for t in threads), "a ring thread is stuck past its deadline"
        assert results == {"producer": True, "consumer": True}, (
            f"after {elapsed:.1f}s: produced {prod_state[0]}, {describe(cons_state, THREAD_COUNT)}; {results}"
        )
        assert cons_state[2] == 0, describe(cons_state, THREAD_COUNT)
        assert cons_state[0] == THREAD_COUNT and cons_state[1] == THREAD_COUNT - 1
        assert len(ring) == 0 and ring.try_pop() is None
        assert ring.dropped == 0


# -- processes ---------------------------------------------------------------------------------


@pytest.fixture
def ring_dir(tmp_path):
    """A folder for the ring file: in /dev/shm (memory speed) when it is writable."""
    shm = pathlib.Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        d = pathlib.Path(tempfile.mkdtemp(prefix="chronicle-ring-", dir=shm))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def produce_into_ring_file(path: str, count: int, timeout: float) -> None:
    """Child process: open the ring file and push 0..count-1 in order (exit 0), or give up (exit 2)."""
    deadline = time.monotonic() + timeout
    state = np.array([0], np.int64)
    with SpscRing.open(path) as ring:
        buf = ring.buffer
        done = run_until_done(lambda: produce_in_place(buf, state, count, MAX_IDLE), deadline)
    if not done:
        print(f"producer gave up after pushing {state[0]} of {count}", file=sys.stderr, flush=True)
        sys.exit(2)


def test_a_spawned_process_produces_a_million_values_the_parent_consumes_in_order(ring_dir):
    path = str(ring_dir / "ring")
    ctx = multiprocessing.get_context("spawn")
    with SpscRing.create(path, CAPACITY, SLOT) as ring:
        buf = ring.buffer
        state = new_consumer_state()
        consume_in_place(buf, state, 0, 1)  # compile while nothing runs
        child = ctx.Process(target=produce_into_ring_file, args=(path, PROCESS_COUNT, DEADLINE), daemon=True)
        child.start()
        try:
            deadline = time.monotonic() + DEADLINE
            done = run_until_done(lambda: consume_in_place(buf, state, PROCESS_COUNT, MAX_IDLE), deadline,
                                  alive=child.is_alive)
            child.join(timeout=30)
            assert child.exitcode == 0, f"the producer process exited with {child.exitcode}; {describe(state, PROCESS_COUNT)}"
            assert done, describe(state, PROCESS_COUNT)
        finally:
            if child.is_alive():
                child.kill()
                child.join(timeout=10)
        assert state[2] == 0, describe(state, PROCESS_COUNT)
        assert state[0] == PROCESS_COUNT and state[1] == PROCESS_COUNT - 1
        assert len(ring) == 0 and ring.try_pop() is None
