"""A team tracking server for tests: PostgreSQL and ``mlflow server`` with basic auth on a free
loopback port, started by ``cvcl server`` as ``make server`` does, with the
user alice added docs/tracking.md's way (:mod:`cvcl.tracking.ephemeral`, which the tracking load
benchmark uses too). Used by the team server's, the Ray sweep's and the load benchmark's tests."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest

from cvcl.tracking import ephemeral
from cvcl.tracking.server import ServerError

__all__ = ["ADMIN_PASSWORD", "PASSWORD", "USER", "TeamServer", "free_port", "running_team_server"]

ADMIN_PASSWORD = secrets.token_urlsafe(16)
USER, PASSWORD = "alice", secrets.token_urlsafe(16)

TeamServer = ephemeral.EphemeralServer  # the names the tests know
free_port = ephemeral.free_port


def _pg_user() -> str | None:
    """Who runs PostgreSQL: this process's user, or an unprivileged one when the tests run as root
    (PostgreSQL refuses root). Skips, saying why, where PostgreSQL cannot be started at all."""
    try:
        return ephemeral.postgres_os_user()
    except ServerError as exc:
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")


@contextlib.contextmanager
def running_team_server(*args: str) -> Iterator[TeamServer]:
    """A started team server (``args``: more server options) with the user alice; stopped,
    with its database, on exit."""
    _pg_user()  # skip (rather than fail) where PostgreSQL cannot run
    with ephemeral.ephemeral_server(ADMIN_PASSWORD, USER, PASSWORD, args=args) as team:
        yield team
