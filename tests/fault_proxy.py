"""Misbehaving servers for tests, all on loopback.

`FaultProxy` forwards S3 requests to a real server (moto), except those a rule picks, which it answers with an error
status (e.g. 503 SlowDown), by dropping the connection, by never answering (`stall`), or by cutting the body short.

    with FaultProxy(upstream, fail_first(2, path_contains="/audio/")) as proxy:
        os.environ["AWS_ENDPOINT_URL"] = proxy.url      # every S3 client now goes through the proxy

`FileServer` serves bytes over plain HTTP (HEAD, GET with ranges, as fsspec's HTTP filesystem reads) with the same
rules. `SilentServer` accepts TCP connections and never answers; `refusing_port()` is a port that refuses them.

Every request is recorded (`log`) with what was done to it, so a test can count the faults it injected and the
retries a client made.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator
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
    """What to do instead of answering normally: answer `status` (with an S3 error body), drop the connection, never
    answer (`stall`: the request is read, then nothing until the server stops), or send the headers and only `cut`
    bytes of the body, then close."""

    status: int | None = None
    drop: bool = False
    stall: bool = False
    cut: int | None = None

    def describe(self) -> str:
        if self.drop:
            return "drop"
        if self.stall:
            return "stall"
        if self.cut is not None:
            return f"cut:{self.cut}"
        return str(self.status)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # without the query
    query: str
    action: str  # "forward" or the fault ("503", "drop", ...)
    status: int | None  # what the client got (None for a drop)


Rule = Callable[[str, str, int], "Fault | None"]  # (method, path, how many earlier requests had this method+path)


def fail_first(n: int, *, status: int = 503, drop: bool = False, stall: bool = False, cut: int | None = None,
               methods: tuple[str, ...] = ("GET",), path_contains: str = "") -> Rule:
    """The first `n` requests of each matching (method, path) get the fault; later ones are forwarded."""
    fault = (Fault(drop=True) if drop else Fault(stall=True) if stall else Fault(cut=cut) if cut is not None
             else Fault(status=status))

    def rule(method: str, path: str, earlier: int) -> Fault | None:
        if method in methods and path_contains in path and earlier < n:
            return fault
        return None

    return rule


def always(*, status: int | None = None, stall: bool = False, drop: bool = False, path_contains: str = "",
           methods: tuple[str, ...] = ("GET", "HEAD")) -> Rule:
    fault = Fault(status=status, stall=stall, drop=drop)

    def rule(method: str, path: str, earlier: int) -> Fault | None:
        return fault if method in methods and path_contains in path else None

    return rule


def combine(*rules: Rule) -> Rule:
    def rule(method: str, path: str, earlier: int) -> Fault | None:
        for r in rules:
            fault = r(method, path, earlier)
            if fault is not None:
                return fault
        return None

    return rule


class _RuleServer:
    """A threaded HTTP server whose every request is first offered to `rule` and recorded in `log`; the handler comes
    from the subclass (`_handler_class`)."""

    def __init__(self, rule: Rule | None, host: str, port: int, name: str):
        self.rule: Rule = rule or (lambda method, path, earlier: None)
        self.log: list[Seen] = []
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # stalled requests wait for it
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def _handler_class(self):
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

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


class FaultProxy(_RuleServer):
    def __init__(self, upstream: str, rule: Rule | None = None, host: str = "127.0.0.1", port: int = 0):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        super().__init__(rule, host, port, "fault-proxy")

    def faults(self, path_contains: str = "") -> list[Seen]:
        return [s for s in self.log if s.action != "forward" and path_contains in s.path]

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
                if fault is not None and fault.cut is None:
                    _apply_fault(self, proxy, fault, path, query)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    action = "forward" if fault is None else fault.describe()
                    proxy._record(Seen(self.command, path, query, action, response.status))
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() in HOP_BY_HOP or (key.lower() == "content-length" and self.command != "HEAD"):
                            continue
                        self.send_header(key, value)
                    if self.command != "HEAD":
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        _write_body(self, data, fault)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        return Handler


def _apply_fault(handler: BaseHTTPRequestHandler, server, fault: Fault, path: str, query: str) -> None:
    """Answer a request with `fault` (drop, stall or an error status); `server` has _record and _stopping."""
    if fault.drop:
        server._record(Seen(handler.command, path, query, "drop", None))
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
        return
    if fault.stall:
        server._record(Seen(handler.command, path, query, "stall", None))
        server._stopping.wait()  # a server that accepted the request and never answers
        handler.close_connection = True
        return
    code, message = S3_ERRORS.get(fault.status, ("Error", "injected"))
    payload = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
               f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()
    # Recorded before answering: a client that has its answer finds the request in the log.
    server._record(Seen(handler.command, path, query, fault.describe(), fault.status))
    handler.send_response(fault.status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", "0" if handler.command == "HEAD" else str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def _write_body(handler: BaseHTTPRequestHandler, data: bytes, fault: Fault | None) -> None:
    """The body, or (for a `cut` fault) its first bytes and then a closed connection, as a server that dies
    mid-transfer leaves it."""
    if fault is None or fault.cut is None:
        handler.wfile.write(data)
        return
    handler.wfile.write(data[: fault.cut])
    handler.wfile.flush()
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


class FileServer(_RuleServer):
    """Files held in memory over plain HTTP: HEAD, and GET with or without a byte range (as fsspec's HTTP filesystem
    reads), each request first offered to `rule` (faults as in FaultProxy). `files` maps a path ('/a.wav') to bytes;
    `log` records every request. `sized=False` is a server that tells no size and ignores ranges (the body runs to
    the connection's end)."""

    def __init__(self, files: dict[str, bytes], rule: Rule | None = None, host: str = "127.0.0.1",
                 sized: bool = True):
        self.files = files
        self.sized = sized
        super().__init__(rule, host, 0, "file-server")

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def _handle(self) -> None:
                path, _, query = self.path.partition("?")
                fault = server._decide(self.command, path)
                if fault is not None and fault.cut is None:
                    _apply_fault(self, server, fault, path, query)
                    return
                data = server.files.get(path)
                if data is None:
                    server._record(Seen(self.command, path, query, "404", 404))
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, body, extra = 200, data, {}
                wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if not server.sized:
                    server._record(Seen(self.command, path, query, "unsized", 200))
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    if self.command == "GET":
                        self.wfile.write(data)
                    return
                if wanted and self.command == "GET":
                    start = int(wanted.group(1))
                    end = min(int(wanted.group(2)) if wanted.group(2) else len(data) - 1, len(data) - 1)
                    status, body = 206, data[start:end + 1]
                    extra["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                server._record(Seen(self.command, path, query, "forward" if fault is None else fault.describe(),
                                    status))
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command == "GET":
                    _write_body(self, body, fault)

            do_GET = do_HEAD = _handle

        return Handler


class SilentServer:
    """A TCP server that accepts every connection and never sends a byte: the hung server that a client without a
    read timeout waits on forever. `accepted` counts the connections it took."""

    def __init__(self, host: str = "127.0.0.1"):
        self._socket = socket.create_server((host, 0), backlog=64)
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def accepted(self) -> int:
        return len(self._connections)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed by stop()
                return
            self._connections.append(connection)

    def start(self) -> "SilentServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not, on Linux)
        self._socket.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SilentServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port on which every connection is refused: bound but not listening, and held for the block (so no other
    process can start listening there meanwhile)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
