"""One POST from a metadata worker, bounded whatever the service does: no
redirect followed, one deadline from the first connection to the last byte
of the body, a cap on the body's decoded bytes, nothing of the request or
the reply logged.

keystoneauth1 and requests bound each socket operation (a connect, a
read), not a call: a service that sends one byte before each read timeout
holds the caller for as long as it likes. No well-kept library bounds a
whole call on a blocking socket, so a watchdog does: each socket a call
uses is registered with the call's deadline, and at the deadline the
watchdog shuts them down, which ends at once any read or write blocked on
them. The session's adapter
(DeadlineAdapter) makes connections that register their sockets.
"""

import contextlib
import os
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
    """The end of one call, and the sockets to shut down then."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False
        self._over = False
        self._lock = threading.Lock()
        # Duplicates of the call's sockets' descriptors: shutdown() acts
        # on the socket whatever descriptor names it, and the ssl module
        # detaches the socket object it wraps.
        self._clones = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock):
        """Shut sock down at the deadline, or now if it has passed."""
        try:
            clone = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return  # closed already: nothing to wait for
        with self._lock:
            if not (self.expired or self._over):
                self._clones.append(clone)
                return
            expired = self.expired
        if expired:
            _shut(clone)
        clone.close()

    def _expire(self):
        with self._lock:
            if self._over:
                return  # the call ended as the timer fired
            self.expired = True
            clones = list(self._clones)
        for clone in clones:
            _shut(clone)

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
            clones, self._clones = self._clones, []
        for clone in clones:
            clone.close()
        _current.deadline = self._previous


def _shut(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _watch(sock):
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(sock)


class _Watched:
    """A urllib3 connection whose sockets the deadline of the call using
    it watches: a new one as soon as it is connected (urllib3's _new_conn
    makes it), before a proxy's CONNECT or a TLS handshake, and a
    kept-alive one for each request it carries."""

    def _new_conn(self):
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args, **kwargs):
        if self.sock is not None:
            _watch(self.sock)
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
