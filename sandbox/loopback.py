"""One HTTP server on loopback, for every stand-in the tests and scripts serve.

`LoopbackServer` is a ThreadingHTTPServer on 127.0.0.1 and a free port, one daemon thread per
connection, serving from a daemon thread of its own, and quiet: no access log, and no traceback
when a client hangs up (the ledger's deadlines, and the tests' own faults, do that on purpose).

What it answers is either a route table, {method: function(request)}, for a stand-in of a few
lines (a method not in it gets http.server's 501), or a `QuietHandler` subclass for one that
shapes the connection itself (keep-alive, raw bytes, TLS). `request` is the handler:
http.server's `command`, `path`, `headers`, `rfile`, `wfile`, with `body()` and `send()`.

    with LoopbackServer({"GET": lambda request: request.send(200, b"ok")}) as server:
        requests.get(server.url)
"""

import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and shakes a TLS client's hand in its own thread."""

    def log_message(self, *args):
        pass

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):  # wrapped without a handshake: a slow one blocks no accept
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def body(self):
        """The request's body, as long as its Content-Length says."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, body=b"", headers=()):
        """A whole answer: the status, `headers` as (name, value) pairs, its Content-Length, `body`."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Routed(QuietHandler):
    routes = {}

    def _route(self):
        self.routes[self.command](self)


def _routed(routes):
    """A handler with a do_METHOD for each method of `routes`, which calls routes[METHOD](itself)."""
    methods = {f"do_{method}": _Routed._route for method in routes}
    return type("RoutedHandler", (_Routed,), {"routes": routes, **methods})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Silent when the client went away (deadlines, resets and endless bodies hang up on purpose);
        a stand-in's own bug still prints its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """An HTTP(S) server on a free 127.0.0.1 port; `start()`/`stop()`, or a context manager.

    `answers`: {method: function(request)}, or a QuietHandler subclass. `tls=(certificate, key)`
    serves HTTPS. `host` is "127.0.0.1:PORT" and `url` the scheme and host.
    """

    def __init__(self, answers, *, tls=None):
        handler = answers if isinstance(answers, type) else _routed(answers)
        self.server = _Server(("127.0.0.1", 0), handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True,
                                                     do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
