"""A fault-injecting HTTP proxy for tests: forwards S3 requests to a real server (moto) on loopback, except those a
rule picks, which it answers with an error status (e.g. 503 SlowDown) or by dropping the connection.

    with FaultProxy(upstream, fail_first(2, path_contains="/audio/")) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url      # every S3 client now goes through the proxy

Every request is recorded (`proxy.log`) with what was done to it, so a test can count the faults it injected and the
retries a client made.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}

S3_ERRORS = {
    403: ("AccessDenied", "Access Denied"),
    404: ("NoSuchKey", "The specified key does not exist."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


@dataclass(frozen=True)
class Fault:
    """What to do instead of forwarding: answer `status` (with an S3 error body), or drop the connection."""

    status: int | None = None
    drop: bool = False

    def describe(self) -> str:
        return "drop" if self.drop else str(self.status)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    query: str
    action: str  # "forward" or the fault ("503", "drop", ...)
    status: int | None  # what the client got (None for a drop)


Rule = Callable[[str, str, int], "Fault | None"]  # (method, path, how many earlier requests had this method+path)


def fail_first(n: int, *, status: int = 503, drop: bool = False, methods: tuple[str, ...] = ("GET",),
               path_contains: str = "") -> Rule:
    """The first `n` requests of each matching (method, path) get the fault; later ones are forwarded."""
    fault = Fault(drop=True) if drop else Fault(status=status)

    def rule(method: str, path: str, earlier: int) -> Fault | None:
        if method in methods and path_contains in path and earlier < n:
            return fault
        return None

    return rule


def always(*, status: int, path_contains: str, methods: tuple[str, ...] = ("GET", "HEAD")) -> Rule:
    def rule(method: str, path: str, earlier: int) -> Fault | None:
        return Fault(status=status) if method in methods and path_contains in path else None

    return rule


def combine(*rules: Rule) -> Rule:
    def rule(method: str, path: str, earlier: int) -> Fault | None:
        for r in rules:
            fault = r(method, path, earlier)
            if fault is not None:
                return fault
        return None

    return rule


class FaultProxy:
    def __init__(self, upstream: str, rule: Rule | None = None, host: str = "127.0.0.1", port: int = 0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rule: Rule = rule or (lambda method, path, earlier: None)
        self.log: list[Seen] = []
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def faults(self, path_contains: str = "") -> list[Seen]:
        return [s for s in self.log if s.action != "forward" and path_contains in s.path]

    def requests(self, method: str | None = None, path_contains: str = "") -> list[Seen]:
        return [s for s in self.log if (method is None or s.method == method) and path_contains in s.path]

    def _decide(self, method: str, path: str) -> Fault | None:
        with self._lock:
            earlier = self._counts.get((method, path), 0)
            self._counts[(method, path)] = earlier + 1
            return self.rule(method, path, earlier)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.log.append(seen)

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline().strip():
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                path, _, query = self.path.partition("?")
                fault = proxy._decide(self.command, path)
                if fault is not None and fault.drop:
                    proxy._record(Seen(self.command, path, query, "drop", None))
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if fault is not None:
                    code, message = S3_ERRORS.get(fault.status, ("Error", "injected"))
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                               f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
                    # Recorded before answering: a client that has its answer finds the request in the log.
                    proxy._record(Seen(self.command, path, query, fault.describe(), fault.status))
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    proxy._record(Seen(self.command, path, query, "forward", response.status))
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() in HOP_BY_HOP or (key.lower() == "content-length" and self.command != "HEAD"):
                            continue
                        self.send_header(key, value)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        return Handler
