"""A loopback HTTP server over a folder, with Range support and injectable faults (tests only)."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class Mirror:
    """Serves ``root`` on 127.0.0.1 (a free port) until :meth:`close`.

    Faults, keyed by the URL path relative to the root (e.g. ``"2018LA_Seg_Training Set/X/mri_norm2.h5"``):

    - ``truncate[path] = n``: the next full GET of ``path`` announces the whole length but sends
      only ``n`` bytes and drops the connection (once);
    - ``corrupt.add(path)``: ``path`` is served with one byte changed (every time);
    - ``errors[path] = [500, ...]``: the next GETs of ``path`` answer these statuses, in order.

    ``requests`` records ``(path, Range header or None)`` of every GET.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.truncate: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.errors: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.sent: dict[str, int] = {}  # body bytes sent per path
        self._lock = threading.Lock()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                mirror._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, suffix: str) -> list[str | None]:
        """The Range headers of the GETs whose path ends with ``suffix``."""
        return [r for p, r in self.requests if p.endswith(suffix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        rel = unquote(h.path.lstrip("/"))
        rng = h.headers.get("Range")
        with self._lock:
            self.requests.append((rel, rng))
            status = self.errors.get(rel, []).pop(0) if self.errors.get(rel) else None
            cut = None if rng else self.truncate.pop(rel, None)
        if status is not None:
            h.send_error(status)
            return
        path = self.root / rel
        if ".." in Path(rel).parts or not path.is_file():
            h.send_error(404)
            return
        data = bytearray(path.read_bytes())
        if rel in self.corrupt:
            data[len(data) // 2] ^= 0xFF
        start = 0
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        body = bytes(data[start:]) if cut is None else bytes(data[:cut])
        h.wfile.write(body)
        with self._lock:
            self.sent[rel] = self.sent.get(rel, 0) + len(body)
        if cut is not None:
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)  # the client sees the body end early
