"""No secret on a command line, in a Ray task's runtime environment, or in a file others can read
(issue 28): ``ps`` shows every process's command line to every user of the machine, Ray shows
its tasks' runtime environments to everyone who can reach the cluster.

The team server (tests/team_server.py, one for the module) runs against a PostgreSQL cluster of
this module's own, named by ``CVCL_BACKEND_URI``/``CVCL_AUTH_URI`` with a password in them (the
cluster trusts its socket, so the password is carried, never checked); the process tree it makes
(``cvcl server``, ``mlflow server``, uvicorn and its two workers) is read the way ``ps`` reads
it. The test skips, saying why, where PostgreSQL cannot run. The other tests start nothing and
take about a second: the files that hold secrets rewritten over a copy others could read, a
password given on ``cvcl server``'s command line, and the Ray sweep's task options.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvcl.commands import server as server_command
from cvcl.commands import sweep_ray
from cvcl.io.atomic import write_secret
from cvcl.tracking import ephemeral
from cvcl.tracking import server as team_server
from cvcl.tracking.server import DB_USER, PG_PORT, LocalPostgres, ServerError, write_auth_config
from tests.team_server import ADMIN_PASSWORD, TeamServer, running_team_server

DB_PASSWORD = secrets.token_urlsafe(16)
SERVER_SECRETS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_USERNAME")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the server's processes, for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[LocalPostgres]:
    """A PostgreSQL cluster with the databases ``mlflow`` and ``mlflow_auth``, as a lab's own."""
    try:
        pg_user = ephemeral.postgres_os_user()
    except ServerError as exc:
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")
    # under /tmp and enterable: the PostgreSQL user (tests run as root) must reach its socket
    folder = Path(tempfile.mkdtemp(prefix="cvcl-db-", dir="/tmp"))
    folder.chmod(0o711)
    cluster = LocalPostgres(folder / "pg", pg_user)
    try:
        cluster.start()
        for name in ("mlflow", "mlflow_auth"):
            cluster.create_database(name)
        yield cluster
    finally:
        if cluster.data.is_dir() and cluster.running():
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _with_password(uri: str) -> str:
    return uri.replace(f"://{DB_USER}@", f"://{DB_USER}:{DB_PASSWORD}@", 1)


@pytest.fixture(scope="module")
def server(database: LocalPostgres) -> Iterator[TeamServer]:
    """The team server on ``database``, its URIs (with the password) given the documented way, in
    the environment; two workers, so that worker processes are there to read."""
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as env:  # only while it starts: the other tests see none
            env.setenv("CVCL_BACKEND_URI", _with_password(database.uri("mlflow")))
            env.setenv("CVCL_AUTH_URI", _with_password(database.uri("mlflow_auth")))
            team = stack.enter_context(running_team_server("--workers", "2"))
        yield team


def _process_tree(root: int) -> dict[int, list[str]]:
    """The command line of ``root`` and of each of its descendants, read as ``ps`` (and any user)
    reads them: /proc/PID/cmdline, the parents from /proc/PID/stat."""
    children: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:  # after the ")" closing the program's name: state, then the parent's id
            parent = int(stat_file.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):  # ended meanwhile
            continue
        children.setdefault(parent, []).append(int(stat_file.parent.name))
    tree: dict[int, list[str]] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tree[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        todo += children.get(pid, [])
    return tree


@pytest.mark.slow
def test_no_password_is_on_the_command_line_of_the_server_or_of_any_process_it_starts(server, database):
    assert server.proc is not None
    tree = _process_tree(server.proc.pid)
    lines = [" ".join(argv) for argv in tree.values()]
    # the tree really is read: cvcl server, mlflow server, uvicorn and its workers
    assert len(tree) >= 4 and any("mlflow server" in line for line in lines), lines
    flask_key = (server.state / "secret_key").read_text().strip()
    wanted = {"database password": DB_PASSWORD, "admin password": ADMIN_PASSWORD, "Flask secret key": flask_key}
    assert [name for name, secret in wanted.items() if any(secret in line for line in lines)] == [], lines
    # where the secrets are instead: the processes' environments, which only their owner may read
    assert [pid for pid in tree if _mode(Path(f"/proc/{pid}/environ")) & 0o077] == []
    # and the server did use the databases those URIs name (it made no cluster of its own)
    import psycopg

    for name, table in (("mlflow", "experiments"), ("mlflow_auth", "users")):
        with psycopg.connect(host=str(database.folder), port=PG_PORT, user=DB_USER, dbname=name) as con:
            assert con.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (table,), name
    assert not (server.state / "postgres").exists()


# -- the command line and the environment mlflow server gets --------------------------------------


def test_mlflow_server_gets_the_database_and_artifact_uris_in_its_environment_only(tmp_path, monkeypatch):
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(team_server, "_run_until_stopped", lambda cmd, env: started.append((cmd, env)) or 0)
    for name in SERVER_SECRETS:
        monkeypatch.delenv(name, raising=False)
    uris = {
        "CVCL_BACKEND_URI": "postgresql://mlflow:s3cret-runs@db.internal/mlflow",
        "CVCL_AUTH_URI": "postgresql://mlflow@db.internal/mlflow_auth?password=s3cret-users",
        "CVCL_ARTIFACTS": "https://cvcl:s3cret-store@dav.internal/cvcl",
    }
    for name, uri in uris.items():
        monkeypatch.setenv(name, uri)
    state = tmp_path / "state"
    assert team_server.serve(server_command.parse_args(["--state-dir", str(state)])) == 0
    cmd, env = started[0]
    flask_key, admin = ((state / name).read_text().strip() for name in ("secret_key", "admin_password"))
    assert [arg for arg in cmd if "s3cret" in arg or flask_key in arg or admin in arg] == []
    assert env["MLFLOW_BACKEND_STORE_URI"] == uris["CVCL_BACKEND_URI"]
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == uris["CVCL_ARTIFACTS"]
    assert f"database_uri = {uris['CVCL_AUTH_URI']}" in (state / "basic_auth.ini").read_text()

    # what mlflow server's own options make of that command line and environment: the same URIs
    from mlflow.cli import server as mlflow_server

    for name, value in env.items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)
    params = mlflow_server.make_context("server", cmd[cmd.index("server") + 1 :]).params
    assert params["backend_store_uri"] == uris["CVCL_BACKEND_URI"]
    assert params["artifacts_destination"] == uris["CVCL_ARTIFACTS"] and params["serve_artifacts"]


@pytest.mark.parametrize("option, variable", list(server_command.URI_ENV.items()))
@pytest.mark.parametrize(
    "uri",
    ["postgresql://mlflow:s3cret@db.internal/mlflow", "postgresql://mlflow@db.internal/mlflow?password=s3cret"],
)
def test_a_password_on_cvcl_servers_command_line_is_refused_in_one_line(monkeypatch, option, variable, uri):
    flag = "--" + option.replace("_", "-")
    with pytest.raises(ServerError) as refused:
        server_command.parse_args([flag, uri])
    message = str(refused.value)
    assert message.startswith(f"{flag}: holds a password") and f"{variable}=" in message
    assert "\n" not in message and "s3cret" not in message
    monkeypatch.setenv(variable, uri)  # the documented way: taken from the environment
    assert getattr(server_command.parse_args([]), option) == uri
    assert getattr(server_command.parse_args([flag, "postgresql://db.internal/x"]), option) == (
        "postgresql://db.internal/x"  # the command line, without a password, still wins
    )


def test_a_refused_backend_uri_is_named_without_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCL_BACKEND_URI", "mysql://mlflow:s3cret@db.internal/mlflow")
    with pytest.raises(ServerError) as refused:
        team_server.serve(server_command.parse_args(["--state-dir", str(tmp_path)]))
    assert str(refused.value) == "--backend-uri mysql://mlflow:***@db.internal/mlflow: expected a postgresql:// URI"


# -- files ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_files_with_secrets_are_the_owners_only_after_rewriting_a_copy_others_could_read(tmp_path):
    ini = tmp_path / "basic_auth.ini"
    with _umask(0):  # the loosest umask: the mode must not come from it
        write_auth_config(ini, "postgresql://mlflow:first@db.internal/mlflow_auth", "READ", "admin")
        assert _mode(ini) == 0o600
        ini.chmod(0o644)  # copied in by hand, or made by an older version
        write_auth_config(ini, "postgresql://mlflow:second@db.internal/mlflow_auth", "READ", "admin")
        assert _mode(ini) == 0o600 and ":second@" in ini.read_text()

        for name in ("admin_password", "secret_key"):  # what the server makes, rewritten the same way
            path = tmp_path / name
            path.write_text("old\n")
            path.chmod(0o644)
            write_secret(path, "new\n")
            assert _mode(path) == 0o600 and path.read_text() == "new\n", name

        # a link planted at the secret's name is replaced, not written through
        elsewhere = tmp_path / "public.txt"
        elsewhere.write_text("public\n")
        (tmp_path / "credentials").symlink_to(elsewhere)
        write_secret(tmp_path / "credentials", "[mlflow]\n")
        assert not (tmp_path / "credentials").is_symlink() and _mode(tmp_path / "credentials") == 0o600
        assert elsewhere.read_text() == "public\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "admin_password",
        "basic_auth.ini",
        "credentials",
        "public.txt",
        "secret_key",
    ]  # no temporary file left behind


# -- the Ray sweep's tasks ------------------------------------------------------------------------


def test_the_ray_tasks_runtime_environment_holds_no_password(monkeypatch):
    password, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.lab.example.org")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    for gpus in (0, 2):
        options = sweep_ray.task_options(gpus, os.environ)
        shown = repr(options)
        assert password not in shown and token not in shown and "alice" not in shown
        assert options["runtime_env"] == {
            "env_vars": {
                "MLFLOW_TRACKING_URI": "https://mlflow.lab.example.org",
                "MLFLOW_TRACKING_INSECURE_TLS": "true",
            }
        }
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[cluster]'")
    serialized = ray.runtime_env.RuntimeEnv(**options["runtime_env"]).serialize()  # what the cluster keeps
    assert "mlflow.lab.example.org" in serialized and password not in serialized and token not in serialized


def test_a_tracking_uri_with_a_password_is_refused_before_any_task(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:s3cret@mlflow.lab.example.org")
    with pytest.raises(sweep_ray.SweepError) as refused:
        sweep_ray.task_options(0, os.environ)
    assert str(refused.value).startswith("MLFLOW_TRACKING_URI holds a password") and "s3cret" not in str(refused.value)
