"""The team's MLflow tracking server: runs in PostgreSQL, artifacts proxied, logins required.

    cvcl server                                   # on 127.0.0.1:5000, state in ~/cvcl-tracking
    cvcl server --host 0.0.0.0 -- --allowed-hosts mlflow.lab.org
    CVCL_BACKEND_URI=postgresql://mlflow:PASSWORD@db.lab.org/mlflow cvcl server   # an existing database

(``make server``). What it keeps, and how, is :mod:`cvcl.tracking.server`'s; this module reads
the options and runs it until it is stopped.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cvcl.tracking.server import PERMISSIONS, ServerConfig, ServerError, serve, uri_password

# the options that may hold a login, and the variables that carry them instead of the command
# line (which ``ps`` shows to every user of the machine)
URI_ENV = {"backend_uri": "CVCL_BACKEND_URI", "auth_uri": "CVCL_AUTH_URI", "artifacts": "CVCL_ARTIFACTS"}


def _uris_from_env(args: argparse.Namespace) -> None:
    """Fill ``args``' URI options from :data:`URI_ENV`'s variables where not given; refuse, in one
    line, a password given on the command line."""
    for name, variable in URI_ENV.items():
        option = "--" + name.replace("_", "-")
        given = getattr(args, name)
        if given is not None and uri_password(given):
            raise ServerError(
                f"{option}: holds a password, which every user of this machine can read on the "
                f"command line (ps); pass the URI in the environment instead: {variable}=... cvcl server"
            )
        if given is None and os.environ.get(variable):
            setattr(args, name, os.environ[variable])


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    """The server's configuration from ``cvcl server``'s arguments (those after ``--`` go to
    ``mlflow server`` unchanged)."""
    default = ServerConfig()
    parser = argparse.ArgumentParser(
        prog="cvcl server",
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to `mlflow server` unchanged (e.g. -- --allowed-hosts mlflow.lab.org).",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=default.state_dir,
        help="where the database cluster, artifacts and credentials live (default: ~/cvcl-tracking)",
    )
    parser.add_argument(
        "--backend-uri",
        help="an existing postgresql:// database for the runs, instead of a cluster of its own in the state folder; "
        "with a password: in the environment variable CVCL_BACKEND_URI, never here",
    )
    parser.add_argument(
        "--auth-uri",
        help="the database for users and permissions (default: the cluster's mlflow_auth, or --backend-uri); "
        "with a password: CVCL_AUTH_URI",
    )
    parser.add_argument(
        "--artifacts",
        help="a folder or object store URI for artifacts (default: STATE/artifacts); with a password: CVCL_ARTIFACTS",
    )
    parser.add_argument("--host", default=default.host, help="interface to serve (default: loopback only)")
    parser.add_argument("--port", type=int, default=default.port)
    parser.add_argument("--workers", type=int, default=default.workers, help="server processes (default: 2)")
    parser.add_argument(
        "--default-permission",
        default=default.default_permission,
        choices=PERMISSIONS,
        help="what each user may do in experiments others created (default: EDIT, "
        "as every stage logs into the shared experiment cvcl-<dataset>); a "
        "per-experiment grant can raise it but not lower it: for read-only "
        "users choose READ and grant EDIT per experiment",
    )
    parser.add_argument(
        "--auth-cache-seconds",
        type=int,
        default=default.auth_cache_seconds,
        help="how long a server worker remembers a checked login (default: 60; 0: check the "
        "password hash on every request, several times slower; a changed password may "
        "still work that long on the other workers)",
    )
    parser.add_argument(
        "--pg-user", help="when run as root: the unprivileged user who runs PostgreSQL (default: postgres)"
    )
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    elif extra:
        parser.error(f"unknown arguments {' '.join(extra)} (put arguments for mlflow server after --)")
    _uris_from_env(args)
    return ServerConfig(**vars(args), mlflow_args=tuple(extra))


def main(argv: list[str] | None = None) -> int:
    code = serve(parse_args(argv))
    if code != 0:
        raise ServerError(f"mlflow server exited with status {code} (its messages are above)")
    return 0
