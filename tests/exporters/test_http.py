"""The receivers' HTTP POST: a total deadline per attempt, over TCP and TLS, even against a trickling server."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import RecordingReceiver, TricklingServer

from exporters import http
from exporters.http import DeadlineExceeded, post


def test_a_post_delivers_the_body_and_returns_the_answer(recording_receiver: RecordingReceiver) -> None:
    """The server receives the exact body and headers; the status and body come back."""
    resp = post(recording_receiver.url("/hook?x=1"), b'{"a": 1}', {"X-Test": "yes"}, timeout=5)
    assert (resp.status, resp.ok, resp.body) == (200, True, b"ok")
    [req] = recording_receiver.received()
    assert (req.path, req.body, req.headers["X-Test"]) == ("/hook?x=1", b'{"a": 1}', "yes")


def test_a_trickling_answer_cannot_hold_an_attempt_past_its_deadline(trickling_server: TricklingServer) -> None:
    """One byte every 50 ms never trips a per-read timeout; the total deadline gives up long before the end."""
    with pytest.raises(DeadlineExceeded):
        post(trickling_server.url, b"{}", {}, timeout=0.3)
    assert trickling_server.closed_by_client.wait(10)
    assert trickling_server.sent < len(trickling_server.answer) // 10


def test_a_connection_refused_is_an_os_error(closed_port: int) -> None:
    """Nothing listening: ConnectionRefusedError, at once."""
    with pytest.raises(ConnectionRefusedError):
        post(f"http://127.0.0.1:{closed_port}/", b"{}", {}, timeout=5)


def test_only_http_urls_are_posted_to() -> None:
    """A file: or schemeless URL is refused before any connection."""
    with pytest.raises(ValueError, match="http"):
        post("file:///etc/passwd", b"", {}, timeout=1)


# --- TLS: the deadline holds through the TLS socket too ------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with openssl)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def trusting(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The client context trusts the test certificate (and keeps pipewarden's deadline socket class)."""
    ctx = ssl.create_default_context(cafile=str(tls_files[0]))
    ctx.sslsocket_class = http._DeadlineSSLSocket
    monkeypatch.setattr(http, "_CONTEXT", ctx)
    yield


def _read_request(sock: ssl.SSLSocket) -> None:
    """Read the whole request (headers, then Content-Length bytes): closing with unread data would reset the
    connection and the client could lose the answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
    )
    while len(body) < length:
        body += sock.recv(65536)


def _tls_server(cert: Path, key: Path, answer: bytes, interval: float) -> tuple[int, threading.Event, list[int]]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    gone = threading.Event()
    sent = [0]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                _read_request(tls)
                for byte in answer:
                    tls.sendall(bytes([byte]))
                    sent[0] += 1
                    if interval:
                        gone.wait(interval)
        except OSError:
            gone.set()
        finally:
            listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1]), gone, sent


def test_https_posts_work(trusting: None, tls_files: tuple[Path, Path]) -> None:
    """A POST over TLS gets its answer."""
    port, _, _ = _tls_server(*tls_files, b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", 0)
    resp = post(f"https://127.0.0.1:{port}/", b"{}", {}, timeout=5)
    assert (resp.status, resp.body) == (202, b"ok")


def test_a_trickling_tls_answer_is_cut_at_the_deadline(trusting: None, tls_files: tuple[Path, Path]) -> None:
    """The TLS socket re-arms its timeout with the time left too."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b"x" * 500
    port, gone, sent = _tls_server(*tls_files, answer, 0.05)
    with pytest.raises(DeadlineExceeded):
        post(f"https://127.0.0.1:{port}/", b"{}", {}, timeout=0.4)
    assert gone.wait(10)
    assert sent[0] < len(answer) // 5
