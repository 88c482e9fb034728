"""`edgelite serve`: a small HTTP classifier service on the device, standard library only.

    POST /classify[?top_k=N]  multipart/form-data (field `image`) or the raw image bytes -> JSON top-k
    GET  /                    a page that takes a photo and shows its top-5 (runtime/page.py)
    GET  /health, GET /model  liveness and counters; labels, preprocessing, backend, shapes

Threads: `ThreadingHTTPServer`, one thread per connection, all sharing one `Classifier` (thread-safe:
results identical to single-threaded use). At most as many requests as cores decode and run at once
(a semaphore): more would not go faster and each decoded photo can take hundreds of MB.

Limits and errors: the body must come with a Content-Length (411 without one or chunked, 400 if
invalid) of at most --max-bytes (413, decided from the header: such a body is never buffered, only read
and dropped in chunks, up to 64 MiB, so that the client sees the answer rather than a reset). A client
may stall 30 s at most. An empty body, a malformed multipart body, a missing `image` field or a bad
top_k is a 400; an unreadable image a 422; one over the runtime's pixel limit (a decompression bomb) a
413; wrong method 405, unknown path 404. Every error is a JSON `{"error": "<one line>"}`, one line on
stderr, the connection closed after it, and the service goes on; an unforeseen exception is a 500
with its one-line message, never a traceback.

Batching: none. Stacking requests that arrive together into one backend call is not worth it here.
Measured with the int8 MobileNetV2 (LiteRT 2.3.0, threads=2, AMD EPYC, 2 cores; LiteRT resizes the
input to [4, 224, 224, 3] and gives identical scores): `Classifier.scores` on a batch of 4 prepared
inputs took 3.53-3.83 ms, 4 single calls 3.56-4.19 ms (medians of 50-300 runs, 4 sessions: 0.91x to
1.01x). That is at most 0.1 ms saved per image, while a request costs the server 4.7 ms (decoding and
resizing dominate; benchmarks/load.py), so under 2 %; a batch would also make its first request wait
for the others, and switching batch sizes re-allocates the interpreter's tensors (~0.1 ms a switch).
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from typing import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .errors import BrokenModel, EdgeliteError, one_line
from .http_request import RequestError, image_error, image_from_multipart, parse_top_k
from .page import PAGE

logger = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a phone's photo is 2-8 MB
DRAIN_LIMIT = 64 * 1024 * 1024  # an unread body up to this size is read and dropped before an error reply


def model_info(classifier) -> dict:
    """What GET /model answers: labels, preprocessing, backend, shapes, quantization and parity."""
    info = {"model": classifier.path.name, "format": classifier.metadata.get("format"),
            "classes": classifier.classes, "labels": classifier.labels,
            "preprocess": classifier.spec.to_dict(), "backend": classifier.backend.version,
            "input": {"shape": list(classifier.input.shape), "dtype": str(classifier.input.dtype)},
            "output": {"shape": list(classifier.output.shape), "dtype": str(classifier.output.dtype)}}
    info.update({k: classifier.metadata[k] for k in ("quantization", "parity") if k in classifier.metadata})
    if classifier.backend.check_set() is not None:  # the parity recorded at export, measured again here
        from .checkset import verify

        report = verify(classifier)
        info["verified_here"] = {k: report[k] for k in ("images", "agreement", "top1_agreement", "same_top1_as_export",
                                                        "max_abs_diff_from_export", "min_agreement", "passed",
                                                        "kernels")}
    return info


class ClassifierServer(ThreadingHTTPServer):
    """A threading HTTP server holding the shared Classifier, the limits and the counters."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], classifier, max_bytes: int = DEFAULT_MAX_BYTES):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.classifier, self.max_bytes = classifier, max_bytes
        self.classes = classifier.classes or len(classifier.labels or []) or 1
        self.model_json = json.dumps(model_info(classifier), default=str).encode()
        self.slots = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
        self.started, self.requests, self.errors, self.active = time.monotonic(), 0, 0, 0
        self.lock = threading.Lock()
        super().__init__(address, Handler)

    def count(self, delta_active: int = 0, status: int | None = None) -> None:
        with self.lock:
            self.active += delta_active
            if status is not None:
                self.requests += 1
                self.errors += status >= 400

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside a handler (the client left): one line, no traceback."""
        exc = sys.exc_info()[1]
        log(f"{client_address[0]}: connection error: {type(exc).__name__}: {one_line(exc)}")


def log(line: str) -> None:
    logger.warning(f"edgelite serve: {line}")


class Handler(BaseHTTPRequestHandler):
    """Routes, reads bodies within the limits, and answers every failure as one line of JSON."""

    server: ClassifierServer
    protocol_version = "HTTP/1.1"
    server_version = "edgelite"
    timeout = 30  # seconds a client may stall mid-request

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _handle(self) -> None:
        self._body_read = False
        self.server.count(+1)
        try:
            url = urlsplit(self.path)
            method, action = ROUTES.get(url.path, (None, None))
            if action is None:
                raise RequestError(404, f"no such path: {url.path} (GET /, POST /classify, GET /health, GET /model)")
            if self.command not in (method, "HEAD" if method == "GET" else method):
                raise RequestError(405, f"{self.command} is not allowed on {url.path}: use {method}", allow=method)
            content_type, body = action(self, url.query)
            self._reply(200, content_type, body)
        except RequestError as exc:
            self._error(exc.status, exc.message, exc.allow)
        except (BrokenPipeError, ConnectionResetError):  # the client left: nobody to answer
            self.close_connection = True
            log(f"{self.client_address[0]} {self.command} {self.path}: the client closed the connection")
        except Exception as exc:  # a bug or an unforeseen input: one line to the client and the log
            self._error(500, f"internal error: {type(exc).__name__}: {one_line(exc)}")
        finally:
            self.server.count(-1)

    def _page(self, query: str):
        return "text/html; charset=utf-8", PAGE.encode()

    def _health(self, query: str):
        server = self.server
        with server.lock:
            state = {"status": "ok", "uptime_s": round(time.monotonic() - server.started, 1),
                     "requests": server.requests, "errors": server.errors}
        return "application/json", json.dumps(state).encode()

    def _model(self, query: str):
        return "application/json", self.server.model_json

    def _classify(self, query: str):
        classifier = self.server.classifier
        top_k = parse_top_k(query, self.server.classes)
        body = self._read_body()
        start = time.perf_counter()
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            body = image_from_multipart(body, content_type)
        with self.server.slots:
            try:
                predictions = classifier.predict(body, top_k)
            except BrokenModel:
                raise  # the model's fault, not the upload's: a 500
            except EdgeliteError as exc:
                raise image_error(exc) from None
        answer = {"predictions": [p._asdict() for p in predictions], "model": classifier.path.name,
                  "ms": round((time.perf_counter() - start) * 1e3, 2)}
        return "application/json", json.dumps(answer).encode()

    def _read_body(self) -> bytes:
        """The request body, refused before reading if it is missing, unannounced or over the limit."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not accepted: send a Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise RequestError(411, "no Content-Length: send the image with its length")
        if len(set(lengths)) > 1 or not re.fullmatch(r"\s*[0-9]{1,15}\s*", lengths[0]):
            raise RequestError(400, f"invalid Content-Length: {', '.join(lengths)!r}")
        length = int(lengths[0])
        if length > self.server.max_bytes:
            raise RequestError(413, f"a body of {length:,} bytes is over the {self.server.max_bytes:,} byte limit")
        self._body_read = True
        if length == 0:
            raise RequestError(400, "empty body: send an image (multipart field 'image', or the raw bytes)")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise RequestError(408, f"timed out reading a body of {length:,} bytes") from None
        if len(body) < length:
            raise RequestError(400, f"the body ended after {len(body):,} of {length:,} bytes")
        return body

    def _reply(self, status: int, content_type: str, body: bytes, close: bool = False,
               allow: str | None = None) -> None:
        self.send_response(status)
        if allow:
            self.send_header("Allow", allow)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.server.count(status=status)  # before the client can read the answer and ask /health
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, allow: str | None = None) -> None:
        """One line to the log, `{"error": ...}` to the client; the connection is closed after it."""
        log(f"{self.client_address[0]} {self.command or '-'} {getattr(self, 'path', '-')}: {status} {message}")
        if not getattr(self, "_body_read", True):
            self._drain()
        self._reply(status, "application/json", json.dumps({"error": message}).encode(), close=True, allow=allow)

    def _drain(self) -> None:
        """Read and drop an announced body we will not use, so the client gets our answer, not a reset."""
        raw = self.headers.get("Content-Length", "") if getattr(self, "headers", None) else ""
        left = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else 0
        if left > DRAIN_LIMIT or self.headers.get("Transfer-Encoding"):
            return
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method, huge headers) as JSON too."""
        self._body_read = True
        self._error(code, message or HTTPStatus(code).phrase)

    def log_request(self, code="-", size="-") -> None:
        """No access log: errors are logged, one line each, by _error."""

    def log_error(self, format: str, *args) -> None:
        if not format.startswith("Request timed out"):  # an idle keep-alive connection closing is no error
            log(f"{self.client_address[0]}: {format % args}")


ROUTES = {"/": ("GET", Handler._page), "/health": ("GET", Handler._health), "/model": ("GET", Handler._model),
          "/classify": ("POST", Handler._classify)}


def serve(classifier, host: str = "127.0.0.1", port: int = 8080, max_bytes: int = DEFAULT_MAX_BYTES,
          ready: Callable[[str, int], None] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C, then stop cleanly (requests in flight get 5 s) and return 0.
    `ready(url, classes)` is called once the socket listens."""
    try:
        server = ClassifierServer((host, port), classifier, max_bytes)
    except OSError as exc:
        raise EdgeliteError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def stop(signum, frame) -> None:  # shutdown() waits for serve_forever: call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, stop) for s in handled} if threading.current_thread() is threading.main_thread() \
        else {}
    bound = server.server_address
    url = f"http://{f'[{bound[0]}]' if ':' in bound[0] else bound[0]}:{bound[1]}/"
    if ready is not None:
        ready(url, server.classes)
    else:
        logger.info(f"edgelite serve: {url} model {classifier.path.name}, {server.classes} classes")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        deadline = time.monotonic() + 5
        while server.active and time.monotonic() < deadline:
            time.sleep(0.05)
        for s, handler in previous.items():
            signal.signal(s, handler)
    logger.info(f"edgelite serve: stopped after {server.requests} requests ({server.errors} errors)")
    return 0
