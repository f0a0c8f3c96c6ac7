"""The team's MLflow tracking server: runs in PostgreSQL, artifacts proxied, logins required.

``make server`` runs ``cvcl server`` (:mod:`cvcl.commands.server`), which starts ``mlflow server``
with MLflow's basic-auth app on 127.0.0.1:5000 (``--host 0.0.0.0`` to serve the lab's network).
Stages log to it with no code change once ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME``
and ``MLFLOW_TRACKING_PASSWORD`` are set.

What it keeps lives in a state folder (``--state-dir``, default ``~/cvcl-tracking``):

- ``postgres/``: a PostgreSQL cluster of its own, created on the first start and run for as
  long as the server runs, reached only through a Unix socket in that folder (no TCP port).
  ``CVCL_BACKEND_URI=postgresql://...`` (or ``--backend-uri`` without a password) names an
  existing database instead.
- ``artifacts/``: the files that clients upload through the server (``--artifacts`` names
  another folder, or an object store such as ``s3://lab-bucket/cvcl``).
- ``basic_auth.ini``: MLflow's auth configuration (read through ``MLFLOW_AUTH_CONFIG_PATH``);
  the users live in the database ``mlflow_auth`` of the same cluster.
- ``admin_password`` and ``secret_key``: made on the first start (mode 600), unless
  ``MLFLOW_AUTH_ADMIN_PASSWORD`` / ``MLFLOW_FLASK_SERVER_SECRET_KEY`` are set. MLflow uses the
  admin password only to create the admin user, when the user store is new.

No secret goes on a command line, where ``ps`` shows it to every user of the machine: the
database URIs, the artifact destination and the passwords reach ``mlflow server`` (and its
workers, which inherit them) through its environment, and the files that hold secrets are
written mode 600 (:func:`cvcl.io.atomic.write_secret`). tests/test_secrets.py checks both.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from cvcl.errors import CvclError
from cvcl.io.atomic import write_secret

DB_USER = "mlflow"  # the cluster's superuser; only the local socket reaches it
PG_PORT = 5432  # names the socket file only: the cluster listens on no TCP port
SOCKET_PATH_MAX = 107  # sun_path limit on Linux, terminating NUL excluded


class ServerError(CvclError):
    """The server or its database cannot be set up as asked."""


def pg_binary(name: str) -> str:
    """The path of PostgreSQL's program ``name``: from PATH, or from Debian's versioned folders
    (``/usr/lib/postgresql/<version>/bin``, not on PATH), the newest version first."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not versions:
        raise ServerError(
            f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql), "
            "or pass --backend-uri postgresql://... of an existing database"
        )
    return versions[-1]


class LocalPostgres:
    """A PostgreSQL cluster in ``folder``, reachable only through a Unix socket there.

    PostgreSQL refuses to run as root, so when this process is root, the cluster's programs run
    as ``os_user`` (who then owns ``folder``)."""

    def __init__(self, folder: Path, os_user: str | None = None) -> None:
        self.folder = folder.resolve()
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.os_user = os_user

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        argv = ["runuser", "-u", self.os_user, "--", *cmd] if self.os_user else list(cmd)
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def _check(self, what: str, proc: subprocess.CompletedProcess) -> None:
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ServerError(
                f"{what} failed in {self.folder}: {lines[-1] if lines else f'exit {proc.returncode}'} (log: {self.log})"
            )

    def uri(self, database: str) -> str:
        """The SQLAlchemy URI of ``database`` in this cluster, through its socket."""
        return f"postgresql+psycopg://{DB_USER}@/{database}?host={quote(str(self.folder))}&port={PG_PORT}"

    def _prepare_folder(self) -> None:
        socket = self.folder / f".s.PGSQL.{PG_PORT}"
        if len(str(socket)) > SOCKET_PATH_MAX:
            raise ServerError(
                f"{self.folder}: too long a path for PostgreSQL's socket ({len(str(socket))} "
                f"characters, at most {SOCKET_PATH_MAX}); choose a shorter --state-dir"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # the socket in it admits without a password: its owner only
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            if self._run("test", "-w", str(self.folder)).returncode != 0:
                raise ServerError(
                    f"PostgreSQL runs as user {self.os_user}, who cannot reach {self.folder}: "
                    "choose a --state-dir whose parent folders that user may enter"
                )

    def start(self) -> None:
        """Create the cluster if it does not exist yet, and start it."""
        self._prepare_folder()
        if not (self.data / "PG_VERSION").is_file():
            # trust on the socket alone: the folder is the owner's only, and TCP is switched off
            self._check(
                "initdb",
                self._run(
                    pg_binary("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    DB_USER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=reject",
                ),
            )
            settings = (
                f"\n# set by cvcl.tracking.server\nlisten_addresses = ''\n"
                f"unix_socket_directories = '{self.folder}'\nport = {PG_PORT}\n"
            )
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(settings)
        if self.running():
            return
        self._check(
            "starting PostgreSQL",
            self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "start"),
        )

    def running(self) -> bool:
        return self._run(pg_binary("pg_ctl"), "-D", str(self.data), "status").returncode == 0

    def stop(self) -> None:
        if self.running():
            self._check(
                "stopping PostgreSQL", self._run(pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
            )

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it exists."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(
            host=str(self.folder), port=PG_PORT, user=DB_USER, dbname="postgres", autocommit=True
        ) as con:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                con.execute(f'CREATE DATABASE "{name}"')


def _secret(path: Path, env_name: str) -> str:
    """The value of ``env_name`` if set, else the one kept in ``path`` (made once, mode 600)."""
    if os.environ.get(env_name):
        return os.environ[env_name]
    if not path.is_file():
        write_secret(path, secrets.token_urlsafe(24) + "\n")
    elif path.stat().st_mode & 0o077:  # made or copied by hand, readable by others: the owner's only
        path.chmod(0o600)
        print(f"note: {path} was readable by other users; made it the owner's only (mode 600)", flush=True)
    return path.read_text().strip()


def network_warning(host: str, mlflow_args: Sequence[str]) -> str | None:
    """The one-line warning for serving ``host`` beyond this machine over plain HTTP (basic auth
    sends each password with every request), or None for a loopback address or a server given a
    TLS certificate (``-- --uvicorn-opts "--ssl-certfile ..."``, ``--gunicorn-opts "--certfile ..."``)."""
    name = host.strip("[]")
    try:
        loopback = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = name.lower() == "localhost"
    if loopback or any("certfile" in arg for arg in mlflow_args):
        return None
    return (
        f"warning: serving {host} beyond this machine over plain http://: passwords cross the network "
        "in clear text; put the server behind HTTPS (a reverse proxy such as nginx or Caddy with a "
        "certificate, reaching it on 127.0.0.1) or reach it through ssh -L"
    )


def permission_note(default_permission: str) -> str | None:
    """A note on a default permission above READ: MLflow resolves a user's permission on an
    experiment as at least the default, so a READ grant cannot make anyone read-only under it."""
    if default_permission not in ("EDIT", "MANAGE"):
        return None
    return (
        f"note: --default-permission {default_permission}: every user may {default_permission.lower()} "
        "every experiment, and a READ grant on one does not lower that (MLflow takes the default "
        "as a floor); for read-only users start with --default-permission READ and grant EDIT "
        "per experiment"
    )


def write_auth_config(
    path: Path, database_uri: str, default_permission: str, admin: str, auth_cache_s: int = 60
) -> None:
    """MLflow's basic-auth configuration (the ini file ``MLFLOW_AUTH_CONFIG_PATH`` names).

    ``auth_cache_s``: how long a worker remembers a checked login. MLflow hashes the password
    (PBKDF2) on every request otherwise: about 0.5 CPU-s per request on the 2-core VM, which
    left 16 logging clients waiting 80 s to start a run (benchmarks/tracking_load.py). The
    price: a changed or revoked password may still work on the other workers for that long.
    """
    write_secret(  # an external database URI may hold a password
        path,
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin}\n"
        f"auth_cache_ttl_seconds = {int(auth_cache_s)}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
    )


def uri_password(uri: str) -> str | None:
    """The password ``uri`` holds (``scheme://user:PASSWORD@host/...`` or libpq's
    ``?password=...``), as written, or None."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unbalanced [ in the host: read the login part by hand
        login = uri.partition("://")[2].partition("/")[0].rpartition("@")[0]
        return login.partition(":")[2] or None
    return parts.password or next(iter(parse_qs(parts.query).get("password", [])), None)


def redacted(uri: str) -> str:
    """``uri`` with its password, if any, replaced by ``***``: for messages and logs."""
    password = uri_password(uri)
    if not password:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri.partition("://")[0] + "://***"
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    query = parts.query.replace(f"password={password}", "password=***")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _artifacts(value: str) -> str:
    if "://" in value:  # an object store (s3://, gs://, ...): MLflow reaches it
        return value
    folder = Path(value).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def _pg_user(name: str | None) -> str | None:
    """The OS user who runs PostgreSQL: None (this process's own) unless this process is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name or "postgres")
    except KeyError:
        raise ServerError(
            f"PostgreSQL refuses to run as root and there is no user {name or 'postgres'!r}: "
            "pass --pg-user with an existing unprivileged user"
        ) from None
    return name or "postgres"


PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")  # MLflow's, for default_permission


@dataclass(frozen=True)
class ServerConfig:
    """How to run the server (``cvcl server``'s options, :mod:`cvcl.commands.server`).

    ``state_dir``: where the database cluster, artifacts and credentials live; ``backend_uri``: an
    existing postgresql:// database for the runs instead of a cluster in ``state_dir``;
    ``auth_uri``: the users' database (default the cluster's ``mlflow_auth``, or ``backend_uri``);
    ``artifacts``: a folder or object store URI (default ``state_dir/artifacts``); ``host`` and
    ``port`` to serve; ``workers``: server processes; ``default_permission``: what each user may do
    in experiments others created (one of :data:`PERMISSIONS`); ``auth_cache_seconds``: see
    :func:`write_auth_config`; ``pg_user``: who runs PostgreSQL when this process is root;
    ``mlflow_args``: passed to ``mlflow server`` unchanged.
    """

    state_dir: Path = Path("~/cvcl-tracking")
    backend_uri: str | None = None
    auth_uri: str | None = None
    artifacts: str | None = None
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    default_permission: str = "EDIT"
    auth_cache_seconds: int = 60
    pg_user: str | None = None
    mlflow_args: tuple[str, ...] = ()


def server_env(state: Path, admin: str, backend: str, artifacts: str) -> dict[str, str]:
    """This environment plus what ``mlflow server`` and its auth app need, the secrets kept in
    ``state``: the backend URI and the artifact destination go here, not on its command line
    (``ps`` shows command lines to every user; MLflow reads both options from these variables)."""
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": backend,
        "MLFLOW_ARTIFACTS_DESTINATION": artifacts,
        "MLFLOW_AUTH_CONFIG_PATH": str(state / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin,
        "MLFLOW_AUTH_ADMIN_PASSWORD": _secret(state / "admin_password", "MLFLOW_AUTH_ADMIN_PASSWORD"),
        # signs the login form's CSRF token: the same across restarts and workers
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(state / "secret_key", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    }
    # MLflow's job runner serves its GenAI features (scorers, trace rollups), which no stage
    # uses; off, it costs no extra processes
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # MLflow's usage telemetry, off unless the environment turns it on; the UI then counts its
    # telemetry notice as answered (cvcl/tracking/ui_app.py, docs/tracking.md)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # each worker's database connections: SQLAlchemy's 5 + 10 made the 64th concurrent client
    # wait past the pool's timeout (an HTTP 400 from MLflow); PostgreSQL allows 100 in all
    env.setdefault("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "10")
    env.setdefault("MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW", "20")
    return env


def _run_until_stopped(cmd: list[str], env: dict[str, str]) -> int:
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    finally:  # SIGTERM (raised as SystemExit by cvcl.entrypoint) or Ctrl-C: end it before its database
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve(config: ServerConfig) -> int:
    """Start the database (if it is ours) and the MLflow server; stop both when the server ends;
    the server's exit status."""
    state = config.state_dir.expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    if config.backend_uri and not config.backend_uri.startswith("postgresql"):
        raise ServerError(f"--backend-uri {redacted(config.backend_uri)}: expected a postgresql:// URI")
    cluster = None if config.backend_uri else LocalPostgres(state / "postgres", _pg_user(config.pg_user))
    if cluster is not None:
        cluster.start()
    try:
        if cluster is None:
            assert config.backend_uri is not None  # no local cluster: the server at --backend-uri
            backend, auth = config.backend_uri, config.auth_uri or config.backend_uri
        else:
            for name in ("mlflow", "mlflow_auth"):
                cluster.create_database(name)
            backend, auth = cluster.uri("mlflow"), config.auth_uri or cluster.uri("mlflow_auth")
        admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
        write_auth_config(state / "basic_auth.ini", auth, config.default_permission, admin, config.auth_cache_seconds)
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "cvcl-basic-auth",
            "--serve-artifacts",
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--workers",
            str(config.workers),
            *config.mlflow_args,
        ]
        shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        password = (
            "MLFLOW_AUTH_ADMIN_PASSWORD" if os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD") else state / "admin_password"
        )
        print(
            f"MLflow tracking server on http://{shown}:{config.port}; admin user {admin!r} "
            f"(first password: {password}); state in {state}",
            flush=True,
        )
        if note := permission_note(config.default_permission):
            print(note, flush=True)
        if warning := network_warning(config.host, config.mlflow_args):
            print(warning, file=sys.stderr, flush=True)
        artifacts = _artifacts(config.artifacts or str(state / "artifacts"))
        return _run_until_stopped(cmd, server_env(state, admin, backend, artifacts))
    finally:
        if cluster is not None:
            cluster.stop()
