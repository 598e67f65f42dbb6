"""The one transport, against loopback servers that misbehave at the socket: deadlines, bounds, reuse, proxies."""

import socket
import threading
import time

import pytest

from ledger.transport import Transport, TransportError


class RawServer:
    """A loopback TCP server whose every connection is handed to `serve(conn, request_bytes)`; counts accepts."""

    def __init__(self, serve):
        self.serve = serve
        self.accepted = 0
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            buffer = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    self.requests.append(head.decode("latin-1"))
                    if self.serve(conn, head) == "close":
                        return
            except OSError:
                return

    def close(self):
        self.sock.close()


@pytest.fixture
def raw():
    servers = []

    def start(serve):
        servers.append(RawServer(serve))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def ok(conn, head, body=b'{"ok": true}'):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))


def drip_body(conn, head):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        conn.sendall(b"x")
        time.sleep(0.3)
    return "close"


def drip_headers(conn, head):
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000:
        conn.sendall(bytes([byte]))
        time.sleep(0.3)
    return "close"


@pytest.mark.parametrize("serve", [drip_body, drip_headers], ids=["body", "headers"])
def test_a_dripping_server_is_cut_off_at_the_deadline(raw, serve):
    server = raw(serve)
    transport = Transport(deadline=2, timeout=(5, 5))
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.request("GET", server.url + "/v2/").read(10_000)
    assert caught.value.kind == "deadline"
    assert "gave up after 2s" in caught.value.message
    assert time.monotonic() - started < 15  # per-read timeouts alone would never end it


def endless(conn, head):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    block = b"[" * 65536
    while True:
        conn.sendall(block)


def test_an_endless_body_stops_at_the_limit(raw):
    server = raw(endless)
    with pytest.raises(TransportError) as caught:
        Transport(deadline=30).request("GET", server.url + "/").read(1024 * 1024)
    assert caught.value.kind == "too_large" and "1048576-byte limit" in caught.value.message


def test_a_declared_length_over_the_limit_is_refused_before_reading(raw):
    server = raw(lambda conn, head: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n") or "close")
    with pytest.raises(TransportError, match="of 999999999 bytes exceeds the 100-byte limit"):
        Transport().request("GET", server.url + "/").read(100)


def test_a_unicode_digit_length_is_not_a_number(raw):
    def unicode_length(conn, head):
        conn.sendall("HTTP/1.1 200 OK\r\nContent-Length: ²\r\nConnection: close\r\n\r\n{}".encode())
        return "close"
    server = raw(unicode_length)
    response = Transport().request("GET", server.url + "/")
    assert response.read(100) == b"{}"


def test_too_many_headers_is_a_broken_answer(raw):
    def many(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200 + b"Content-Length: 0\r\n\r\n")
        return "close"
    server = raw(many)
    with pytest.raises(TransportError) as caught:
        Transport().request("GET", server.url + "/")
    assert caught.value.kind == "broken"


def test_connections_are_kept_alive_and_a_stale_one_is_replaced(raw):
    served = {"n": 0}

    def twice_then_close(conn, head):
        served["n"] += 1
        ok(conn, head)
        return "close" if served["n"] == 2 else None
    server = raw(twice_then_close)
    transport = Transport()
    for _ in range(4):
        assert transport.request("GET", server.url + "/").read(100) == b'{"ok": true}'
    assert served["n"] == 4
    assert server.accepted == 2  # one connection for the first two, a new one after the server hung up


def test_proxies_come_from_the_environment_and_no_proxy_is_honoured(raw, monkeypatch):
    proxy = raw(ok)
    monkeypatch.setenv("HTTP_PROXY", "http://user:pa%40ss@" + proxy.url.split("//")[1])
    monkeypatch.setenv("NO_PROXY", "")
    Transport().request("GET", "http://registry.invalid:5000/v2/").read(100)
    assert proxy.requests[0].startswith("GET http://registry.invalid:5000/v2/ HTTP/1.1")
    assert "Proxy-Authorization: Basic dXNlcjpwYUBzcw==" in proxy.requests[0]
    direct = raw(ok)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    Transport().request("GET", direct.url + "/v2/").read(100)
    assert len(proxy.requests) == 1 and direct.requests[0].startswith("GET /v2/ HTTP/1.1")


def test_netrc_is_never_read(raw, tmp_path, monkeypatch):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login netrc-user password netrc-secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    server = raw(ok)
    Transport().request("GET", server.url + "/v2/").read(100)
    assert "authorization" not in server.requests[0].lower()


def test_an_unreachable_host_and_a_non_http_url_are_transport_errors():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError) as caught:
        Transport().request("GET", f"http://127.0.0.1:{port}/")
    assert caught.value.kind == "unreachable"
    with pytest.raises(TransportError, match="not an http"):
        Transport().request("GET", "file:///etc/passwd")


def test_headers_are_read_as_email_reads_them(raw):
    def odd(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Twice: first\r\nx-twice: second\r\n"
                     b"X-Folded: one\r\n  two\r\nX-Empty:\r\nx-case: Value \r\n\r\n{}")
    server = raw(odd)
    response = Transport().request("GET", server.url + "/")
    assert response.header("X-TWICE") == "first"  # the first of a repeated name, in any case
    assert response.header("X-Folded") == "one\r\n  two"
    assert response.header("X-Empty") == "" and response.header("X-Case") == "Value "
    assert response.header("Missing") is None
    assert response.read(100) == b"{}"


def test_a_line_that_is_no_header_ends_the_headers(raw):
    server = raw(lambda conn, head: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nnot a header\r\n"
                                                 b"X-After: 1\r\n\r\n{}"))
    response = Transport().request("GET", server.url + "/")
    assert response.header("X-After") is None and response.read(100) == b"{}"


def test_a_request_says_what_http_client_says_and_no_header_can_break_a_line(raw):
    server = raw(ok)
    transport = Transport(user_agent="ledger-test/1")
    transport.request("GET", server.url + "/v2/x/tags/list?n=5#fragment", {"Accept": "a/b"}).read(100)
    lines = server.requests[0].split("\r\n")
    assert lines[0] == "GET /v2/x/tags/list?n=5 HTTP/1.1"
    assert lines[1:] == [f"Host: {server.url.split('//')[1]}", "User-Agent: ledger-test/1",
                         "Accept-Encoding: identity", "Accept: a/b"]
    for value in ("token\r\nX-Injected: 1", "token\nX", "caf\u00e9 \u2603"):
        with pytest.raises(TransportError) as caught:
            transport.request("GET", server.url + "/", {"Authorization": value})
        assert caught.value.kind == "broken"
    with pytest.raises(TransportError) as caught:
        transport.request("GET", server.url + "/a b")
    assert caught.value.kind == "broken"
    assert len(server.requests) == 1  # nothing refused was sent


def test_a_deadline_fires_after_the_watchdog_has_slept_through_an_idle_spell(raw):
    """The watchdog is not woken when a request starts: one starting while it sleeps is still cut off
    at its own deadline."""
    quick, slow = raw(ok), raw(drip_body)
    transport = Transport(deadline=2, timeout=(5, 5))
    for _ in range(20):
        transport.request("GET", quick.url + "/").read(100)
    time.sleep(0.5)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        transport.request("GET", slow.url + "/").read(10_000)
    assert caught.value.kind == "deadline"
    assert time.monotonic() - started < 3.5


def test_a_chunked_body_is_read_and_its_connection_kept(raw):
    """Chunks framed as RFC 9112 says (an extension, a trailer); the connection serves the next request."""
    def chunked(conn, head):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"4;ext=1\r\n{\"a\"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: t\r\n\r\n")
    server = raw(chunked)
    transport = Transport()
    for _ in range(3):
        assert transport.request("GET", server.url + "/").read(100) == b'{"a": 12}'
    assert server.accepted == 1


@pytest.mark.parametrize("size", [b"0x4", b"+4", b"4_0", b"-1", b"1" * 17, b"\xb2", b""],
                         ids=["0x", "plus", "underscore", "negative", "17-digits", "superscript", "empty"])
def test_a_chunk_size_that_int_would_take_but_is_no_hex_is_broken(raw, size):
    server = raw(lambda conn, head: conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 + size + b"\r\nabcd\r\n0\r\n\r\n") or "close")
    with pytest.raises(TransportError) as caught:
        Transport().request("GET", server.url + "/").read(100)
    assert caught.value.kind == "broken"


def test_a_chunk_longer_than_its_size_and_a_body_cut_short_are_broken(raw):
    longer = raw(lambda conn, head: conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 b"2\r\nabcd\r\n0\r\n\r\n") or "close")
    cut = raw(lambda conn, head: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") or "close")
    for server, said in ((longer, "broken answer"), (cut, "ended after 3 bytes, 7 short")):
        with pytest.raises(TransportError) as caught:
            Transport().request("GET", server.url + "/").read(100)
        assert caught.value.kind == "broken" and said in caught.value.message


def test_endless_interim_answers_are_broken(raw):
    def continues(conn, head):
        while True:
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    with pytest.raises(TransportError) as caught:
        Transport(deadline=10).request("GET", raw(continues).url + "/")
    assert caught.value.kind == "broken"


def test_an_answer_that_will_close_is_not_kept(raw):
    """HTTP/1.0 without keep-alive, `Connection: close`, and an encoding not decoded here (read up to the close)."""
    answers = [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
               b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n{}"]
    for answer in answers:
        server = raw(lambda conn, head, answer=answer: conn.sendall(answer) or "close")
        transport = Transport()
        for _ in range(2):
            assert transport.request("GET", server.url + "/").read(100) == b"{}"
        assert server.accepted == 2, answer


def test_a_status_line_that_is_none_is_broken(raw):
    superscript = "HTTP/1.1 \u00b200 OK".encode("latin-1")
    for line in (b"HTTP/1.1 2000 OK", b"HTTP/2 200 OK", b"ICY 200 OK", superscript, b"x" * 70_000):
        server = raw(lambda conn, head, line=line: conn.sendall(line + b"\r\nContent-Length: 0\r\n\r\n") or "close")
        with pytest.raises(TransportError) as caught:
            Transport().request("GET", server.url + "/")
        assert caught.value.kind == "broken", line[:20]
