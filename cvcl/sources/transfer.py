"""Fetching files by URL or local path into a content-addressed cache, verified by sha256.

Why a cache outside ``data/raw``: DVC deletes a stage's outputs before it reruns the stage, so
files kept only in ``data/raw`` would be downloaded again whenever a ``download.*`` param
changes. Verified files live instead in ``<cache>/sha256/<ab>/<sha256>`` (``<cache>`` is
``$CVCL_CACHE_DIR``, else ``$XDG_CACHE_HOME/cvcl``, else ``~/.cache/cvcl``), are re-hashed before
every use, and are copied (verified again) into the stage's output. A file whose checksum has
been verified is never fetched twice.

Transfers are resumable: bytes arrive in ``<cache>/partial/<sha256>.part`` and an interrupted
transfer continues with an HTTP ``Range`` request, in the same run (transient errors are retried
with exponential backoff) or the next one. A file that fails its checksum is discarded: after a
resumed transfer it is fetched once more from the start, after a fresh one it is an error.
A lock per file keeps parallel DVC queue workers from writing the same partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from cvcl import __version__
from cvcl.errors import DataError

CHUNK = 1 << 20  # bytes per read: large enough for speed, small enough for a smooth progress bar
TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


def default_cache_dir() -> Path:
    """Where verified downloads are kept (see the module docstring)."""
    if os.environ.get("CVCL_CACHE_DIR"):
        return Path(os.environ["CVCL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cvcl"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_verified(src: Path, dst: Path, sha256: str | None = None) -> str:
    """Copy ``src`` to ``dst`` and return the sha256 of what reached ``dst``.

    The copy is hashed as written and read back, so a fault on either disk shows; with ``sha256``
    given, a different digest is a :class:`DataError` and ``dst`` is removed.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    written = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            written.update(chunk)
            fout.write(chunk)
    expected = sha256 or written.hexdigest()
    actual = sha256_file(dst)
    if actual != expected or written.hexdigest() != expected:
        dst.unlink()
        raise DataError(
            src, f"sha256 mismatch after copying to {dst}: expected {expected[:16]}..., got {actual[:16]}..."
        )
    return actual


class _Transient(Exception):
    """A failure worth retrying (the connection, a 5xx, a short body)."""


class Fetcher:
    """Fetch files into the cache; ``progress`` (a tqdm bar or None) counts bytes.

    ``retries`` extra attempts per file after a transient failure, waiting ``backoff_s * 2**k``
    seconds (at most 30) before attempt ``k + 2``; ``timeout_s`` per network operation.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
        progress=None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.retries, self.backoff_s, self.timeout_s = retries, backoff_s, timeout_s
        self.progress, self.sleep = progress, sleep

    # -- the cache ---------------------------------------------------------------------------
    def store_path(self, sha256: str) -> Path:
        return self.cache / "sha256" / sha256[:2] / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.cache / "partial" / f"{sha256}.part"

    def cached(self, sha256: str) -> Path | None:
        """The verified cached copy of ``sha256``, or None (a damaged copy is removed)."""
        path = self.store_path(sha256)
        if not path.is_file():
            return None
        if sha256_file(path) == sha256:
            return path
        path.unlink()
        return None

    # -- fetching ----------------------------------------------------------------------------
    def fetch(self, source: str, sha256: str, size: int | None = None) -> Path:
        """The cached, verified file with digest ``sha256``, fetched from ``source`` if needed."""
        sha256 = sha256.lower()
        (self.cache / "locks").mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.cache / "locks" / f"{sha256}.lock")):
            hit = self.cached(sha256)
            if hit is not None:
                self._count(size or hit.stat().st_size)
                self._check_local_source(source, sha256, size)
                return hit
            partial = self.partial_path(sha256)
            partial.parent.mkdir(parents=True, exist_ok=True)
            while True:
                resumed = self._transfer(source, partial, size)
                got = sha256_file(partial)
                if got == sha256 and (size is None or partial.stat().st_size == size):
                    target = self.store_path(sha256)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(partial, target)
                    return target
                self._count(-partial.stat().st_size)
                partial.unlink()
                if not resumed:  # a complete fresh transfer is wrong: the source is bad
                    raise DataError(
                        source,
                        f"sha256 mismatch: expected {sha256[:16]}..., got {got[:16]}...; "
                        "the file is corrupt or not the published one (discarded)",
                    )
                # a resumed transfer may have joined two different versions: once more from zero

    def _check_local_source(self, source: str, sha256: str, size: int | None) -> None:
        """Tell the user when a local mirror's copy is bad even though the cache saved this run:
        the next machine without that cache would fail on it. (A URL source is not re-read: that
        would defeat the cache.)"""
        if is_url(source):
            return
        path = Path(source)
        if not path.is_file():
            problem = "is missing"
        elif size is not None and path.stat().st_size != size:
            problem = f"has {path.stat().st_size} bytes, expected {size}"
        elif sha256_file(path) != sha256:
            problem = "has the wrong sha256 (corrupt or not the published file)"
        else:
            return
        print(
            f"warning: {source}: {problem}; used the verified copy in the cache instead. Replace the mirror's file.",
            file=sys.stderr,
        )

    def read_text(self, source: str) -> str | None:
        """A small text file (a case list), or None where the source has no such file."""
        if not is_url(source):
            path = Path(source)
            return path.read_text() if path.is_file() else None
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(self._request(source), timeout=self.timeout_s) as resp:
                    return resp.read().decode("utf-8")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code not in TRANSIENT_HTTP or attempt == self.retries:
                    raise DataError(source, f"HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if attempt == self.retries:
                    raise DataError(source, f"cannot be read ({_reason(exc)})") from None
            self.sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def _transfer(self, source: str, partial: Path, size: int | None) -> bool:
        """Complete ``partial`` from ``source``; True if bytes were appended to an earlier part."""
        resumed = False
        for attempt in range(self.retries + 1):
            offset = partial.stat().st_size if partial.exists() else 0
            if size is not None and offset >= size:
                return resumed or offset > 0  # complete, or too long: the checksum decides
            try:
                if is_url(source):
                    resumed |= self._http(source, partial, offset)
                else:
                    resumed |= self._local(Path(source), partial, offset)
                return resumed
            except _Transient as exc:
                if attempt == self.retries:
                    kept = partial.stat().st_size if partial.exists() else 0
                    raise DataError(
                        source,
                        f"download failed after {attempt + 1} attempts ({exc}); "
                        f"rerun the stage to resume ({kept} bytes kept in {partial})",
                    ) from None
                self.sleep(self._delay(attempt))
        raise AssertionError("unreachable")

    def _local(self, src: Path, partial: Path, offset: int) -> bool:
        if not src.is_file():
            raise DataError(src, "not found in the mirror")
        with open(src, "rb") as fin, open(partial, "ab" if offset else "wb") as fout:
            fin.seek(offset)
            while chunk := fin.read(CHUNK):
                fout.write(chunk)
                self._count(len(chunk))
        return offset > 0

    def _http(self, url: str, partial: Path, offset: int) -> bool:
        request = self._request(url, {"Range": f"bytes={offset}-"} if offset else {})
        try:
            resp = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # our part is longer than the file: start again
                partial.unlink()
                raise _Transient("HTTP 416: the kept part does not fit the file") from None
            if exc.code in TRANSIENT_HTTP:
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
            raise DataError(url, f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise _Transient(_reason(exc)) from None
        with resp:
            appending = offset > 0 and resp.status == 206
            if appending and not resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                partial.unlink()  # a range we did not ask for: do not splice it in
                raise _Transient(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}")
            if offset and not appending:
                self._count(-offset)  # the server ignored Range and sends the whole file
            length = resp.headers.get("Content-Length")
            received = 0
            try:
                with open(partial, "ab" if appending else "wb") as f:
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        received += len(chunk)
                        self._count(len(chunk))
            except (http.client.HTTPException, OSError) as exc:
                raise _Transient(f"transfer interrupted after {received} bytes ({_reason(exc)})") from None
            if length is not None and received < int(length):
                raise _Transient(f"transfer interrupted after {received} of {length} bytes")
        return appending

    # -- helpers -----------------------------------------------------------------------------
    def _request(self, url: str, headers: dict[str, str] | None = None) -> urllib.request.Request:
        return urllib.request.Request(url, headers={"User-Agent": f"cvcl/{__version__}", **(headers or {})})

    def _delay(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, 30.0)

    def _count(self, n: int) -> None:
        if self.progress is not None and n:
            self.progress.update(n)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
