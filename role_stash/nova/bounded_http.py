"""One POST from a metadata worker, bounded whatever the service does: no
redirect followed, one deadline from the first connection to the last byte
of the body, a cap on the body's decoded bytes, nothing of the request or
the reply logged.

keystoneauth1 and requests bound each socket operation (a connect, a
read), not a call: a service that sends one byte before each read timeout
holds the caller for as long as it likes. No well-kept library bounds a
whole call on a blocking socket, so a watchdog does: each connection a call
uses is registered with the call's deadline, and at the deadline the
watchdog shuts their sockets down, which ends at once any read or write
blocked on them. The session's adapter (DeadlineAdapter) makes connections
that register themselves.
"""

import contextlib
import socket
import threading
import time
import typing

import requests
import requests.adapters
from urllib3 import connection as urllib3_connection
from urllib3 import connectionpool
from urllib3 import poolmanager

from role_stash import exception

# Bytes asked of the decoder at a time: urllib3 then inflates at most this
# much per step, so a gzip bomb costs a chunk, not its inflated size.
_CHUNK = 64 * 1024

_current = threading.local()


class _Deadline:
    """The end of one call, and the connections to shut down then."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self._over = False
        self._lock = threading.Lock()
        self._connections = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, connection):
        with self._lock:
            if not self.expired:
                if not self._over:
                    self._connections.append(connection)
                return
        _shut(connection)

    def _expire(self):
        with self._lock:
            if self._over:
                return  # the call ended as the timer fired
            self.expired = True
            connections, self._connections = self._connections, []
        for connection in connections:
            _shut(connection)

    def __enter__(self):
        self._previous = getattr(_current, "deadline", None)
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info):
        self._timer.cancel()
        with self._lock:
            # A connection back in the pool is another call's to use.
            self._over = True
            self._connections = []
        _current.deadline = self._previous


def _shut(connection):
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _watch(connection):
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


class _Watched:
    """A urllib3 connection that registers itself with the deadline of the
    call using it: when it connects, and for each request it carries (a
    kept-alive connection is not connected again)."""

    def connect(self):
        super().connect()
        _watch(self)

    def request(self, *args, **kwargs):
        _watch(self)
        return super().request(*args, **kwargs)


class _HTTPConnection(_Watched, urllib3_connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3_connection.HTTPSConnection):
    pass


class _HTTPPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, its connections watched by the call's deadline
    (through an HTTP(S) proxy too)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is poolmanager.ProxyManager:
            manager.pool_classes_by_scheme = _POOLS
        return manager


def requests_session():
    """A requests.Session whose calls a deadline bounds, for a
    keystoneauth1 Session to send with."""
    session = requests.Session()
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class Reply(typing.NamedTuple):
    """What the service answered: its status, its headers, and the body of
    a 200 (empty for any other status, which is not read)."""

    status: int
    headers: typing.Mapping[str, str]
    content: bytes


def post(session, url, data, *, headers, verify, connect_timeout,
         read_timeout, max_bytes):
    """POST data to url with a keystoneauth1 Session (built on
    requests_session()); return the Reply. Raise VendordataReplyRefused
    when no whole reply came within connect_timeout + read_timeout seconds
    from the start, or the decoded body is over max_bytes; any error of
    the session or of the connection passes through."""
    seconds = connect_timeout + read_timeout
    started = time.monotonic()
    with _Deadline(seconds) as deadline:
        try:
            response = session.request(
                url, "POST", data=data, headers=headers, verify=verify,
                timeout=(connect_timeout, read_timeout), stream=True,
                # A redirect would take the service token and the instance's
                # data to another URL: a 3xx is this target's failure.
                redirect=False, raise_exc=False,
                # keystoneauth logs JSON and text bodies at DEBUG: a reply
                # may be a secret (no-store), and a request holds user-data.
                log=False, connect_retries=0)
            with contextlib.closing(response):
                if response.status_code != 200:
                    return Reply(response.status_code, response.headers, b"")
                content = bytearray()
                for chunk in response.iter_content(_CHUNK):
                    content += chunk
                    if len(content) > max_bytes:
                        raise exception.VendordataReplyRefused(
                            f"the reply's body is over {max_bytes} bytes")
                return Reply(200, response.headers, bytes(content))
        except Exception as error:
            if deadline.expired:
                raise exception.VendordataReplyRefused(
                    f"no whole reply within {seconds} s (connect and read "
                    f"timeouts); cut after "
                    f"{time.monotonic() - started:.1f} s") from error
            raise
