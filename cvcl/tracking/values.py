"""Values as a tracking store keeps them, and the one line that says what was changed.

MLflow, and the team server's PostgreSQL under it, refuse or silently alter some values a
stage may hand them. Each function here returns the value to log and a note (``None`` when the
value is logged as it is), so that :class:`cvcl.tracking.run.Run` logs something readable and
says so in one line, and the stage keeps going:

- text longer than MLflow keeps (params: 6000 characters, tags: 8000) is cut there; MLflow
  itself would cut it, saying nothing where its logs are quiet;
- text that is not valid UTF-8 (bytes decoded with ``surrogateescape``, a lone surrogate),
  which the client cannot even send, and NUL characters, which PostgreSQL refuses (SQLite takes
  them), are logged with those characters escaped (``\\xff``, ``\\ud800``, ``\\x00``);
- a NaN metric is stored as NaN (MLflow keeps it; tables read it as missing);
- an infinite metric is not logged: MLflow would store it as ±1.8e308, a finite number that
  would pass for a real value in means and plots (the point is left out, as a missing value);
- a metric that is not a number is not logged.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit, urlunsplit

PARAM_LIMIT = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
TAG_LIMIT = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
PREVIEW = 40  # characters of an escaped value a note shows


def _escaped(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (surrogates) and NUL written as escapes:
    undecodable bytes kept through ``surrogateescape`` as ``\\xff``, other surrogates as
    ``\\ud800``, NUL as ``\\x00``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:  # bytes decoded with surrogateescape (os.fsdecode, a file name, a subprocess's output)
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate outside that range
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def clean_text(kind: str, key: str, text: str, limit: int) -> tuple[str, str | None]:
    """``text`` as the store can keep it (escaped, then cut at ``limit`` characters), and a note
    naming ``kind`` and ``key`` and what was done, or None."""
    done = []
    escaped = _escaped(text)
    if escaped != text:
        done.append(
            f"not valid UTF-8 text or holds NUL (which PostgreSQL refuses), logged with those "
            f"characters escaped: {escaped[:PREVIEW]!r}{'...' if len(escaped) > PREVIEW else ''}"
        )
    if len(escaped) > limit:
        done.append(f"{len(escaped)} characters, kept the first {limit} (MLflow's limit)")
        escaped = escaped[:limit]
    return escaped, (f"{kind} {key}: {'; '.join(done)}" if done else None)


def clean_param(key: str, text: str) -> tuple[str, str | None]:
    return clean_text("param", key, text, PARAM_LIMIT)


def clean_tag(key: str, text: str) -> tuple[str, str | None]:
    return clean_text("tag", key, text, TAG_LIMIT)


def clean_metric(key: str, value: object, step: int = 0) -> tuple[float | None, str | None]:
    """The value to log for metric ``key`` (None: leave this point out) and a note, or None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, f"metric {key}: {str(value)[:PREVIEW]!r} at step {step} is not a number, not logged"
    if math.isnan(number):
        return number, f"metric {key}: NaN at step {step}, stored as NaN (tables read it as missing)"
    if math.isinf(number):
        return None, (
            f"metric {key}: {number} at step {step} not logged (MLflow would store it as "
            f"{'-' if number < 0 else ''}1.8e308, a finite number)"
        )
    return number, None


def public_uri(uri: str) -> str:
    """``uri`` without a user name or password in it (``http://alice:pw@host`` -> ``http://host``),
    for records that are kept and shared (``models/mlflow_run.json``, a DVC output)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
