"""HTTP requests with a total deadline: a server that trickles its answer cannot hold one longer.

Alert receivers POST through it and Pushgateway pushes PUT through it. The
standard library rather than an HTTP client package: each sends one small
request at a time from its own thread, and what they need that the
well-known clients do not give is a deadline over the *whole* attempt.
``httpx`` and ``urllib3`` time out each socket operation (a server that sends
one byte a second never trips a 5 s read timeout; encode/httpx#1450), so the
sockets here re-arm their timeout with the time left before every read and
write. No connection is kept between attempts; redirects are not followed.

>>> post("http://127.0.0.1:9/", b"{}", {}, timeout=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DeadlineExceeded", "Response", "post", "request"]

_MAX_BODY = 64 * 1024  # answers are short ("ok", "{}"); do not read a huge one


class DeadlineExceeded(TimeoutError):
    """The attempt's total deadline passed before the answer was complete."""


@dataclass(frozen=True, slots=True)
class Response:
    """The status line and (the start of) the body of an answer."""

    status: int
    reason: str
    body: bytes
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed before the server answered in full")
    return left


class _Deadline:
    """Re-arms the socket timeout to the time left before every read and write."""

    _deadline: float | None = None

    def _arm(self) -> None:
        if self._deadline is not None:
            self.settimeout(_left(self._deadline))  # type: ignore[attr-defined]

    def recv_into(self, *args: Any, **kwargs: Any) -> int:
        self._arm()
        return super().recv_into(*args, **kwargs)  # type: ignore[misc]

    def recv(self, *args: Any, **kwargs: Any) -> bytes:
        self._arm()
        return super().recv(*args, **kwargs)  # type: ignore[misc]

    def send(self, *args: Any, **kwargs: Any) -> int:
        self._arm()
        return super().send(*args, **kwargs)  # type: ignore[misc]

    def sendall(self, *args: Any, **kwargs: Any) -> None:
        self._arm()
        super().sendall(*args, **kwargs)  # type: ignore[misc]


class _DeadlineSocket(_Deadline, socket.socket):
    pass


class _DeadlineSSLSocket(_Deadline, ssl.SSLSocket):
    pass


_CONTEXT: ssl.SSLContext | None = None
_CONTEXT_LOCK = threading.Lock()


def _tls() -> ssl.SSLContext:
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            ctx = ssl.create_default_context()
            ctx.sslsocket_class = _DeadlineSSLSocket  # documented hook: wrap_socket returns this class
            _CONTEXT = ctx
        return _CONTEXT


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, deadline: float) -> None:
        super().__init__(host, port, timeout=_left(deadline))
        self.deadline = deadline

    def connect(self) -> None:
        plain = socket.create_connection((self.host, self.port), _left(self.deadline))
        sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        sock._deadline = self.deadline
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


class _TLSConnection(_Connection):
    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(_left(self.deadline))  # bounds the handshake as a whole
        tls = _tls().wrap_socket(self.sock, server_hostname=self.host)
        assert isinstance(tls, _DeadlineSSLSocket)
        tls._deadline = self.deadline
        self.sock = tls


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:
    """POST ``body`` to ``url``; the whole attempt (connect, TLS, send, answer) ends within ``timeout`` s.

    Raises :class:`DeadlineExceeded` when it does not, ``OSError`` when the
    connection fails, ``http.client.HTTPException`` on a malformed answer.
    """
    return request("POST", url, body, headers, timeout=timeout)


def request(method: str, url: str, body: bytes, headers: Mapping[str, str], *, timeout: float) -> Response:
    """:func:`post` with another method (``PUT``, ``DELETE``)."""
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    cls = _TLSConnection if parts.scheme == "https" else _Connection
    conn = cls(parts.hostname, parts.port, deadline)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.request(method, target, body=body, headers={"Content-Length": str(len(body)), **headers})
        resp = conn.getresponse()
        data = resp.read(_MAX_BODY)
        return Response(resp.status, resp.reason, data, {k.lower(): v for k, v in resp.getheaders()})
    except TimeoutError as exc:
        if isinstance(exc, DeadlineExceeded):
            raise
        raise DeadlineExceeded(f"no complete answer within {timeout:g}s") from exc
    finally:
        conn.close()
