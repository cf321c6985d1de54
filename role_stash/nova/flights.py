"""Concurrent misses of one cache entry in one process make one call: the
first caller leads and calls; the others wait for it, never longer than a
call's deadline, and are given its outcome, its reply or its failure, so a
failing service is asked once, not once per waiter in turn."""

import contextlib
import threading

from role_stash import exception

# key -> the _Shared outcome of the call in flight for it.
_flights = {}
_lock = threading.Lock()


class _Shared:
    def __init__(self):
        self.done = threading.Event()
        self.text = None
        self.error = None
        self.callers = 1  # the leader, and the waiters who joined


def callers(key):
    """How many callers the flight of key has (0 with none in flight)."""
    with _lock:
        shared = _flights.get(key)
        return 0 if shared is None else shared.callers


class Flight:
    """One caller's part in a flight: leader says whether it makes the
    call (and then land()s its reply); outcome() is the reply's text."""

    def __init__(self, shared, leader, seconds):
        self._shared = shared
        self.leader = leader
        self._seconds = seconds

    def land(self, text):
        """Give the call's reply to the waiters (the leader's part)."""
        self._shared.text = text

    def outcome(self):
        """Return the call's reply text; a waiter waits for it at most the
        deadline, and raises VendordataReplyRefused when it failed or did
        not end in time."""
        shared = self._shared
        if self.leader:
            return shared.text
        if not shared.done.wait(self._seconds):
            raise exception.VendordataReplyRefused(
                f"the call made for this request gave no reply within "
                f"{self._seconds} s")
        if shared.error is not None:
            raise exception.VendordataReplyRefused(
                f"the call made for this request failed: {shared.error}")
        return shared.text


@contextlib.contextmanager
def flight(key, seconds):
    """Join the flight of key, or lead a new one; yield the Flight. A
    leader's error is every waiter's failure."""
    with _lock:
        shared = _flights.get(key)
        leader = shared is None
        if leader:
            shared = _flights[key] = _Shared()
        else:
            shared.callers += 1
    if not leader:
        yield Flight(shared, False, seconds)
        return
    try:
        yield Flight(shared, True, seconds)
    except Exception as error:
        shared.error = error
        raise
    finally:
        with _lock:
            del _flights[key]
        shared.done.set()
