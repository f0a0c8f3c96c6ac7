"""Sharing data and experiments between clones through a git remote and a DVC remote (slow).

What a lab does (docs/tracking.md, "Sharing data and experiments"): the DVC remote is configured once in
the committed ``.dvc/config``; Alice runs an experiment and ``dvc exp push``es it; Bob clones
the git remote, ``dvc exp pull``s and ``dvc exp apply``s it, ``dvc pull``s, and has her model and
metrics byte for byte with nothing to retrain. One tiny experiment is trained (about 1-2 minutes
on two cores); everything else only moves files.
"""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY, copy_repository, run, set_params

pytestmark = pytest.mark.slow

EXP = "tiny-a"
SHARED_FILES = (
    "models/model.pt",
    "models/mlflow_run.json",
    "metrics/metrics.json",
    "metrics/per_case.csv",
    "data/splits/split.json",
    "params.yaml",
    "dvc.lock",
)


def cached_md5s(lock: Path) -> dict[str, str]:
    """``{path: md5}`` of the cached outputs in a ``dvc.lock`` (a directory's md5 ends in ``.dir``)."""
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {o["path"]: o["md5"] for s in stages.values() for o in s.get("outs", [])}


def in_remote(storage: Path, md5: str) -> bool:
    return (storage / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def up_to_date(repo: Path) -> None:
    """Nothing would rerun: ``dvc status`` is empty and ``dvc repro --dry`` names no stage to run."""
    status = run(["dvc", "status", "--json"], repo).stdout
    assert json.loads(status) == {}, status
    assert "up to date" in run(["dvc", "status"], repo).stdout
    dry = run(["dvc", "repro", "--dry"], repo)
    assert "Running stage" not in dry.stdout + dry.stderr, dry.stdout + dry.stderr


def same_files(a: Path, b: Path, names=SHARED_FILES) -> None:
    for name in names:
        assert (b / name).read_bytes() == (a / name).read_bytes(), name


def clone(origin: Path, dest: Path, branch: str) -> Path:
    run(["git", "clone", "-q", "-b", branch, str(origin), str(dest)], dest.parent)
    return dest


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A bare git remote ``origin``, a folder DVC remote, and Alice's clone with one pushed experiment."""
    root = tmp_path_factory.mktemp("lab")
    origin, storage = root / "origin.git", root / "dvc-storage"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    storage.mkdir()

    alice = root / "alice"
    alice.mkdir()
    copy_repository(alice)
    set_params(alice, TINY)
    run(["git", "commit", "-q", "-am", "tiny params"], alice)
    # the lab, once: the DVC remote goes into .dvc/config, committed, so every clone has it
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], alice)
    run(["git", "add", ".dvc/config"], alice)
    run(["git", "commit", "-q", "-m", "DVC remote"], alice)
    run(["git", "remote", "add", "origin", str(origin)], alice)
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], alice).stdout.strip()
    run(["git", "push", "-q", "-u", "origin", branch], alice)

    started = time.time()
    trained = run(["dvc", "exp", "run", "-n", EXP, "-S", "seed=2"], alice, timeout=900)
    assert "Running stage 'train'" in trained.stdout + trained.stderr
    pushed = run(["dvc", "exp", "push", "origin", EXP], alice)
    (root / "alice.log").write_text(f"exp run: {time.time() - started:.0f} s\n{trained.stdout}\n{pushed.stdout}")
    return {"root": root, "origin": origin, "storage": storage, "alice": alice, "branch": branch}


def test_the_remote_config_travels_in_git(lab):
    config = (lab["alice"] / ".dvc" / "config").read_text()
    assert "remote = storage" in config and str(lab["storage"]) in config
    assert run(["git", "status", "--porcelain", ".dvc/config"], lab["alice"]).stdout == ""


def test_exp_push_puts_the_experiment_in_git_and_its_data_and_model_in_the_dvc_remote(lab):
    listed = run(["dvc", "exp", "list", "origin"], lab["alice"]).stdout
    assert EXP in listed, listed
    refs = run(["git", "for-each-ref", "refs/exps"], lab["origin"]).stdout
    assert refs.strip().endswith(f"/{EXP}"), refs
    md5s = cached_md5s(lab["alice"] / "dvc.lock")
    for path in ("data/raw", "data/processed", "data/splits/split.json", "models/model.pt", "predictions"):
        assert in_remote(lab["storage"], md5s[path]), path
    # metrics are `cache: false`: they travel in the experiment's git commit, not in the DVC remote
    assert not in_remote(lab["storage"], md5s["metrics/metrics.json"])


def test_a_teammate_gets_the_experiment_and_its_model_without_retraining(lab):
    bob = clone(lab["origin"], lab["root"] / "bob", lab["branch"])
    assert "remote = storage" in (bob / ".dvc" / "config").read_text()  # from git, nothing to configure
    assert EXP in run(["dvc", "exp", "list", "origin"], bob).stdout
    assert EXP not in run(["dvc", "exp", "list"], bob).stdout
    run(["dvc", "exp", "pull", "origin", EXP], bob)
    assert EXP in run(["dvc", "exp", "list"], bob).stdout
    run(["dvc", "exp", "apply", EXP], bob)
    run(["dvc", "pull"], bob)

    same_files(lab["alice"], bob)
    assert yaml.safe_load((bob / "params.yaml").read_text())["seed"] == 2
    up_to_date(bob)
    repro = run(["dvc", "repro"], bob)
    assert "Running stage" not in repro.stdout + repro.stderr
    same_files(lab["alice"], bob, ("models/model.pt",))  # still Alice's model
    assert not (bob / "mlflow.db").exists()  # no stage ran here, so nothing was logged

    shown = run(["dvc", "exp", "show", "--json"], bob).stdout
    dice = json.loads((lab["alice"] / "metrics" / "metrics.json").read_text())["dice"]
    assert EXP in shown and json.dumps(dice) in shown


def test_a_promoted_experiment_reaches_a_fresh_clone_with_git_pull_and_dvc_pull(lab):
    alice = lab["alice"]
    # Alice keeps the experiment on the main branch: commit its results, push data and git
    run(["git", "add", "-A"], alice)
    run(["git", "commit", "-q", "-m", f"keep {EXP}"], alice)
    run(["dvc", "push"], alice)
    run(["git", "push", "-q", "origin", lab["branch"]], alice)

    carol = clone(lab["origin"], lab["root"] / "carol", lab["branch"])
    assert not (carol / "models" / "model.pt").exists()
    run(["dvc", "pull"], carol)
    same_files(alice, carol)
    for folder in ("data/raw", "data/processed", "predictions"):
        assert sorted(p.name for p in (carol / folder).rglob("*")) == sorted(
            p.name for p in (alice / folder).rglob("*")
        )
    up_to_date(carol)


# --- the same through an SSH remote on loopback -------------------------------------------------


def _sshd() -> str | None:
    found = shutil.which("sshd") or "/usr/sbin/sshd"  # sbin is not on every user's PATH
    return found if os.path.exists(found) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ssh_remote(tmp_path):
    """An sshd on 127.0.0.1 of this user alone, with a throw-away key; yields an ``ssh://`` URL and key."""
    sshd = _sshd()
    if sshd is None:
        pytest.skip("no sshd: install it for this test (Debian: apt-get install openssh-server)")
    try:
        import dvc_ssh  # noqa: F401
    except ImportError:
        pytest.skip("dvc-ssh is not installed: pip install -e '.[share]' (make setup does)")
    home = tmp_path / "ssh"
    home.mkdir(mode=0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)], check=True)
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    (home / "authorized_keys").chmod(0o600)
    port = _free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {home / 'host_key'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
        f"PidFile {home / 'sshd.pid'}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    try:
        os.makedirs("/run/sshd", exist_ok=True)  # the privilege separation directory sshd insists on
    except OSError:
        pass  # not root: sshd says below whether it can do without
    log = home / "sshd.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=err, stderr=err)
    deadline = time.time() + 20
    while True:
        if proc.poll() is not None:
            pytest.skip(f"sshd cannot run here ({sshd}): {log.read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail(f"sshd did not listen on 127.0.0.1:{port} in 20 s: {log.read_text()[-500:]}")
            time.sleep(0.2)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    storage = tmp_path / "ssh-storage"
    storage.mkdir()
    try:
        yield {"url": f"ssh://{user}@127.0.0.1:{port}{storage}", "key": home / "client_key", "storage": storage}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _add_ssh_remote(repo: Path, ssh: dict) -> None:
    # in .dvc/config.local: this remote's URL (a random port) and key are this machine's alone; a lab
    # commits its real SSH remote's URL to .dvc/config and keeps only keys and passwords --local
    run(["dvc", "remote", "add", "--local", "ssh", ssh["url"]], repo)
    run(["dvc", "remote", "modify", "--local", "ssh", "keyfile", str(ssh["key"])], repo)
    run(["dvc", "remote", "modify", "--local", "ssh", "allow_agent", "false"], repo)


def test_an_ssh_remote_carries_the_experiment_and_its_model_between_clones(lab, ssh_remote, tmp_path):
    """The same teammate flow with the data on an SSH remote (dvc-ssh) instead of a folder."""
    alice = lab["alice"]
    _add_ssh_remote(alice, ssh_remote)
    run(["dvc", "exp", "push", "-r", "ssh", "origin", EXP], alice)
    md5s = cached_md5s(alice / "dvc.lock")
    for path in ("data/raw", "data/processed", "models/model.pt"):
        assert in_remote(ssh_remote["storage"], md5s[path]), path

    dave = clone(lab["origin"], tmp_path / "dave", lab["branch"])
    _add_ssh_remote(dave, ssh_remote)
    run(["dvc", "exp", "pull", "-r", "ssh", "origin", EXP], dave)
    run(["dvc", "exp", "apply", EXP], dave)
    run(["dvc", "pull", "-r", "ssh"], dave)
    same_files(alice, dave)
    up_to_date(dave)
