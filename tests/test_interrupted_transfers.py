"""Interrupted and corrupted transfers to a DVC remote (slow: about a minute, no training).

A lab's remote must never hold a partial object under its final name: DVC names each object by
its md5 (``files/md5/ab/cdef...``, ``.dir`` for a directory's listing) and, once a name is on the
remote, never uploads it again, so a truncated object there would be served to every teammate.
These tests kill ``dvc push`` and ``dvc exp push`` with SIGKILL in the middle of an object
(``tests/cut_transfer.py`` cuts the N-th upload halfway and waits; the test kills it from outside,
so where the kill lands does not depend on timing), then check that the remote holds only
complete objects (each rehashed against its name), that the half-written bytes sit under DVC's
temporary name (``.<random>.tmp``), that a rerun completes the push, and that a teammate's pull
gets byte-identical files. The same runs through an SSH remote on loopback.

A corrupted object on the remote (same length, other bytes) is refused by ``dvc pull`` only with
``verify = true`` on the remote, which the project's way of configuring it sets
(``cvcl remote``, ``make remote``); with DVC's default (``verify = false``) the pull
succeeds and the workspace gets the corrupted bytes, which a test here shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import env, run
from tests.test_shared_experiments import ssh_remote  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow

CUT = Path(__file__).with_name("cut_transfer.py")
MB = 1024 * 1024
FILES = {
    "data/scan_0.bin": 2 * MB,
    "data/scan_1.bin": 2 * MB,
    "data/scan_2.bin": 2 * MB,
    "data/scan_3.bin": 2 * MB,
    "model.bin": 3 * MB,
}
TRACKED = ("data", "model.bin")  # `dvc add`ed: a directory (4 objects and a .dir) and a file


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["dvc", *args], repo, check=check, timeout=180)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo, timeout=60).stdout


def sha256s(repo: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((repo / n).read_bytes()).hexdigest() for n in names}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stored(storage: Path) -> tuple[dict[str, Path], list[Path]]:
    """``({oid: path}, [temporary files])`` of a DVC 3 remote or cache folder."""
    objects, temporary = {}, []
    for path in sorted((storage / "files" / "md5").glob("*/*")):
        if path.name.startswith("."):
            temporary.append(path)
        else:
            objects[path.parent.name + path.name] = path
    return objects, temporary


def assert_complete(storage: Path) -> dict[str, Path]:
    """Every object under its final name hashes to that name (a ``.dir`` listing too)."""
    objects, temporary = stored(storage)
    for oid, path in objects.items():
        assert md5(path) == oid.removesuffix(".dir"), f"{path}: content does not match its name"
    for path in temporary:
        assert path.name.endswith(".tmp"), f"{path}: neither an object nor DVC's temporary file"
    return objects


def write_files(repo: Path, seed: int, sizes: dict[str, int]) -> None:
    rng = random.Random(seed)
    for name, size in sizes.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(rng.randbytes(size))


def make_lab(root: Path, remote: Path | None) -> dict[str, Path]:
    """A bare git ``origin`` and Alice's repository with FILES ``dvc add``ed and committed; with
    ``remote``, the default DVC remote there, configured the project's way and committed."""
    origin, alice = root / "origin.git", root / "alice"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    run(["git", "init", "-q", "-b", "main", str(alice)], root)
    dvc(alice, "init", "-q")
    write_files(alice, 0, FILES)
    dvc(alice, "add", "-q", *TRACKED)
    if remote is not None:
        remote.mkdir()
        run(["cvcl", "remote", str(remote)], alice)
    git(alice, "add", "-A")
    git(alice, "commit", "-q", "-m", "data")
    git(alice, "remote", "add", "origin", str(origin))
    git(alice, "push", "-q", "-u", "origin", "main")
    return {"origin": origin, "alice": alice, "remote": remote}


def clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", "-b", "main", str(origin), str(dest)], dest.parent, timeout=60)
    return dest


def cut_run(repo: Path, args: list[str], cut_at: int, mark: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """Run ``dvc <args>`` until its ``cut_at``-th object upload is half written, then SIGKILL it.
    Returns (the object's source, the remote file it was being written to, the process)."""
    proc = subprocess.Popen(
        [sys.executable, str(CUT), *args],
        cwd=repo,
        start_new_session=True,
        env={**env(), "CUT_AT": str(cut_at), "CUT_MARK": str(mark)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    try:
        while not mark.exists():  # written whole (os.replace) once the cut upload is half done
            if proc.poll() is not None:
                pytest.fail(
                    f"dvc {' '.join(args)} ended ({proc.returncode}) before its upload {cut_at} "
                    f"was cut:\n{proc.stdout.read()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"dvc {' '.join(args)}: upload {cut_at} not reached in 120 s")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: this dvc and nothing else
        out = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, out[-2000:]
    source, target = mark.read_text().splitlines()
    return Path(source), Path(target), subprocess.CompletedProcess(args, proc.returncode, out, "")


def assert_killed_mid_object(storage: Path, source: Path, target: Path, expected: set[str]) -> None:
    """After the kill: complete objects only, fewer than all, the cut one's half in a temp file."""
    objects = assert_complete(storage)
    cut_oid = source.parent.name + source.name
    assert cut_oid in expected
    assert cut_oid not in objects, "the object being written when killed is on the remote under its name"
    assert set(objects) < expected, "nothing was left to push after the kill"
    assert target.parent == storage / "files" / "md5" / cut_oid[:2] and target.name.startswith(".")
    assert target.name.endswith(".tmp") and target in stored(storage)[1]
    assert target.read_bytes() == source.read_bytes()[: source.stat().st_size // 2]  # the half, aside


def assert_pushed(storage: Path, expected: set[str]) -> None:
    objects = assert_complete(storage)
    assert set(objects) == expected, sorted(expected ^ set(objects))


# --- dvc push to a folder remote -----------------------------------------------------------------


def test_a_push_killed_mid_object_leaves_only_complete_objects_and_a_rerun_completes_it(tmp_path):
    lab = make_lab(tmp_path, tmp_path / "storage")
    alice, storage = lab["alice"], lab["remote"]
    expected = set(stored(alice / ".dvc" / "cache")[0])
    assert len(expected) == 6 and sum(o.endswith(".dir") for o in expected) == 1

    source, target, _ = cut_run(alice, ["push"], 3, tmp_path / "mark")
    assert_killed_mid_object(storage, source, target, expected)
    left = len(expected) - len(stored(storage)[0])
    status = dvc(alice, "status", "--cloud").stdout
    assert "new:" in status and "in sync" not in status, status  # the gap is visible before the rerun

    pushed = dvc(alice, "push")
    assert f"{left} files pushed" in pushed.stdout, pushed.stdout  # only what was missing
    assert_pushed(storage, expected)
    assert "in sync" in dvc(alice, "status", "--cloud").stdout
    # DVC neither reuses nor removes the killed upload's temporary file; it is not an object
    assert target.exists() and target.name.startswith(".")

    bob = clone(lab["origin"], tmp_path / "bob")
    dvc(bob, "pull")
    assert sha256s(bob, FILES) == sha256s(alice, FILES)
    assert "up to date" in dvc(bob, "status").stdout


# --- dvc exp push: git refs, then the DVC remote ---------------------------------------------------

MAKE = """import random, sys
from pathlib import Path
import yaml
seed = yaml.safe_load(open("params.yaml"))["seed"]
rng = random.Random(seed)
Path("out").mkdir(exist_ok=True)
for i in range(3):
    Path(f"out/part_{i}.bin").write_bytes(rng.randbytes(1536 * 1024))
"""
OUTS = [f"out/part_{i}.bin" for i in range(3)]


def test_an_exp_push_killed_mid_object_is_completed_by_a_rerun_for_the_teammate(tmp_path):
    lab = make_lab(tmp_path, tmp_path / "storage")
    alice, storage = lab["alice"], lab["remote"]
    (alice / "make.py").write_text(MAKE)
    (alice / "params.yaml").write_text("seed: 0\n")
    (alice / "dvc.yaml").write_text("stages:\n  make:\n    cmd: python make.py\n    params: [seed]\n    outs: [out]\n")
    git(alice, "add", "-A")
    git(alice, "commit", "-q", "-m", "a stage")
    git(alice, "push", "-q", "origin", "main")
    dvc(alice, "exp", "run", "-n", "e1", "-S", "seed=1")
    outputs = sha256s(alice, OUTS)
    cache_before = set(stored(alice / ".dvc" / "cache")[0])  # the experiment's outputs and FILES

    source, target, _ = cut_run(alice, ["exp", "push", "origin", "e1"], 2, tmp_path / "mark")
    assert_killed_mid_object(storage, source, target, cache_before)
    # the git part went first: the experiment is listed on origin, its data is not all there
    assert git(lab["origin"], "for-each-ref", "refs/exps").strip().endswith("/e1")

    bob = clone(lab["origin"], tmp_path / "bob")
    # before the rerun, a teammate gets the experiment's commit and a warning naming what is missing,
    # with exit status 0 (DVC 3.67); applying it then fails, naming the outputs it cannot check out
    early = dvc(bob, "exp", "pull", "origin", "e1")
    said = early.stdout + early.stderr
    missing = {line.split()[1] for line in said.splitlines() if line.startswith("md5: ")}
    assert "Missing cache files" in said and missing, said
    assert missing <= cache_before and not missing & set(stored(storage)[0]), said
    applied = dvc(bob, "exp", "apply", "e1", check=False)
    assert applied.returncode != 0 and "Checkout failed" in applied.stderr, applied.stdout + applied.stderr
    assert "out" in applied.stderr.split()
    assert not (bob / "out").exists()

    dvc(alice, "exp", "push", "origin", "e1")
    assert_pushed(storage, cache_before)
    objects = stored(storage)[0]
    out_dir = json.loads(
        next(p for o, p in objects.items() if o.endswith(".dir") and "part_0.bin" in p.read_text()).read_text()
    )
    assert sorted(e["relpath"] for e in out_dir) == [Path(n).name for n in OUTS]

    again = dvc(bob, "exp", "pull", "origin", "e1")
    assert "Missing cache files" not in again.stdout + again.stderr, again.stdout + again.stderr
    dvc(bob, "exp", "apply", "e1")
    dvc(bob, "pull")
    assert sha256s(bob, OUTS) == outputs
    assert sha256s(bob, FILES) == sha256s(alice, FILES)


# --- a corrupted object on the remote --------------------------------------------------------------


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    """Alice's lab, pushed; then one object of ``data/`` overwritten with same-length garbage."""
    root = tmp_path_factory.mktemp("corrupted")
    lab = make_lab(root, root / "storage")
    dvc(lab["alice"], "push")
    listing = json.loads(next(p for o, p in stored(lab["remote"])[0].items() if o.endswith(".dir")).read_text())
    entry = next(e for e in listing if e["relpath"] == "scan_1.bin")
    path = lab["remote"] / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
    size = path.stat().st_size
    path.chmod(0o644)  # DVC makes remote objects read-only
    garbage = random.Random(99).randbytes(size)
    path.write_bytes(garbage)
    assert md5(path) != entry["md5"] and path.stat().st_size == size
    return {**lab, "root": root, "oid": entry["md5"], "garbage": hashlib.sha256(garbage).hexdigest()}


def holds(folder: Path, sha: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest() == sha]


def test_the_projects_remote_setup_verifies_downloads(corrupted):
    config = (corrupted["alice"] / ".dvc" / "config").read_text()
    assert "remote = storage" in config and "verify = true" in config
    assert git(corrupted["alice"], "status", "--porcelain", ".dvc/config") == ""  # committed


def test_the_remote_setup_turns_verify_on_for_an_existing_remote_and_keeps_its_options(tmp_path, monkeypatch):
    from dvc.repo import Repo

    from cvcl.commands.remote import RemoteError, configure

    Repo.init(str(tmp_path), no_scm=True).close()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RemoteError, match="no DVC remote 'storage'"):
        configure(None)
    config = tmp_path / ".dvc" / "config"
    config.write_text(config.read_text() + "['remote \"storage\"']\n    url = /srv/dvc\n    jobs = 3\n")
    configure(None)  # a lab that set its remote up by hand: verify on, URL and options kept
    configure("/srv/dvc2", local=True, default=False)
    text = config.read_text()
    assert "url = /srv/dvc\n" in text and "jobs = 3" in text and "verify = true" in text
    assert "remote = storage" in text
    local = (tmp_path / ".dvc" / "config.local").read_text()
    assert "url = /srv/dvc2" in local and "verify = true" in local and "remote =" not in local


def test_pull_refuses_a_corrupted_object_and_never_checks_it_out(corrupted):
    bob = clone(corrupted["origin"], corrupted["root"] / "bob")  # verify = true comes from git
    pulled = dvc(bob, "pull", check=False)
    said = pulled.stdout + pulled.stderr
    assert pulled.returncode != 0, said
    assert "Checkout failed" in said and "data" in said.split(), said  # names the output it refused
    assert not holds(bob, corrupted["garbage"]), "the corrupted bytes reached bob's workspace or cache"
    assert corrupted["oid"][2:] not in {p.name for p in (bob / ".dvc" / "cache").rglob("*")}
    assert not (bob / "data").exists()  # the whole directory is refused, not checked out with a hole
    assert sha256s(bob, ["model.bin"]) == sha256s(corrupted["alice"], ["model.bin"])  # the rest arrives

    # verbose, DVC names the object it threw away
    verbose = dvc(bob, "pull", "-v", check=False)
    said = verbose.stdout + verbose.stderr
    assert (
        verbose.returncode != 0
        and f"corrupted cache file '{bob}/.dvc/cache/files/md5/{corrupted['oid'][:2]}/{corrupted['oid'][2:]}'" in said
    ), said
    # the pusher is not told: the object's name is on the remote, so `dvc push` sends nothing
    # (repair: delete that object from the remote, then dvc push)
    assert "Everything is up to date" in dvc(corrupted["alice"], "push").stdout


def test_without_verify_dvc_pull_hands_out_a_corrupted_object(corrupted):
    """DVC's own default, shown so that the setting above stays justified: if this fails, DVC
    started verifying downloads on its own and ``verify = true`` may no longer be needed."""
    carol = clone(corrupted["origin"], corrupted["root"] / "carol")
    dvc(carol, "remote", "modify", "--local", "storage", "verify", "false")
    pulled = dvc(carol, "pull", check=False)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert holds(carol / "data", corrupted["garbage"]) == [carol / "data" / "scan_1.bin"]


# --- the same through an SSH remote on loopback ----------------------------------------------------


def test_a_push_to_an_ssh_remote_killed_mid_object_is_completed_by_a_rerun(ssh_remote, tmp_path):  # noqa: F811
    lab = make_lab(tmp_path, None)
    alice, storage = lab["alice"], ssh_remote["storage"]
    # this machine's remote (a random port, a throw-away key) in .dvc/config.local, as
    # test_shared_experiments does with three `dvc remote` commands; then verify on, the project's way
    (alice / ".dvc" / "config.local").write_text(
        f"['remote \"ssh\"']\n    url = {ssh_remote['url']}\n    keyfile = {ssh_remote['key']}\n"
        "    allow_agent = false\n"
    )
    run(["cvcl", "remote", "--local", "--no-default", "--name", "ssh"], alice)
    expected = set(stored(alice / ".dvc" / "cache")[0])

    source, target, _ = cut_run(alice, ["push", "-r", "ssh"], 3, tmp_path / "mark")
    assert_killed_mid_object(storage, source, target, expected)

    dvc(alice, "push", "-r", "ssh")
    assert_pushed(storage, expected)

    local_config = (alice / ".dvc" / "config.local").read_text()  # URL, key, verify: this machine's
    assert "verify = true" in local_config
    bob = clone(lab["origin"], tmp_path / "bob")
    (bob / ".dvc" / "config.local").write_text(local_config)
    dvc(bob, "pull", "-r", "ssh")
    assert sha256s(bob, FILES) == sha256s(alice, FILES)

    # and a corrupted object on it is refused too
    oid = next(o for o in expected if not o.endswith(".dir"))
    path = storage / "files" / "md5" / oid[:2] / oid[2:]
    path.chmod(0o644)
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    carol = clone(lab["origin"], tmp_path / "carol")
    (carol / ".dvc" / "config.local").write_text(local_config)
    pulled = dvc(carol, "pull", "-r", "ssh", check=False)
    assert pulled.returncode != 0, pulled.stdout + pulled.stderr
    assert all(not p.exists() or md5(p) != md5(path) for p in (carol / n for n in FILES))
