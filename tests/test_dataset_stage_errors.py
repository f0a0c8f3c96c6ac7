"""Bad real-data input stops the download/preprocess stages with one line, leaving nothing behind."""

import pytest

from cvcl.sources.layouts import LA_H5, LA_RELEASE_DIR
from tests.conftest import LA_SAMPLE
from tests.helpers import run, set_params, stage_workspace


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCL_CACHE_DIR", str(tmp_path / "cache"))
    return stage_workspace(tmp_path / "ws")


def fails(ws, stage, words):
    proc = run(["python", "-m", f"stages.{stage}"], ws, check=False)
    lines = [line for line in proc.stderr.strip().splitlines() if "%|" not in line]  # tqdm bars aside
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available")
def test_a_checksum_mismatch_stops_the_download_stage(workspace, tmp_path):
    mirror = tmp_path / "mirror"
    case_id = (LA_SAMPLE / "train.list").read_text().split()[0]
    (mirror / LA_RELEASE_DIR / case_id).mkdir(parents=True)
    data = bytearray((LA_SAMPLE / LA_RELEASE_DIR / case_id / LA_H5).read_bytes())
    data[1000] ^= 1  # one flipped bit
    (mirror / LA_RELEASE_DIR / case_id / LA_H5).write_bytes(bytes(data))
    (mirror / "train.list").write_text(case_id + "\n")
    (mirror / "test.list").write_text("")
    set_params(workspace, {"dataset": "la", "download": {"mirror": str(mirror)}})
    fails(workspace, "download", [f"{case_id}/{LA_H5}", "sha256 mismatch"])
    assert not (workspace / "data").exists() or not any((workspace / "data").iterdir())


def test_a_local_source_without_local_path(workspace):
    set_params(workspace, {"dataset": "brats2019"})
    fails(workspace, "download", ["download.local_path = None", "folder or an archive"])


def test_bad_modalities(workspace):
    set_params(workspace, {"preprocess": {"modalities": ["flair", "pd"]}})
    fails(workspace, "preprocess", ["preprocess.modalities", "'pd'", "flair, t1, t1ce, t2"])
    assert not (workspace / "data" / "processed").exists()


def test_bad_crop_margin(workspace):
    set_params(workspace, {"preprocess": {"crop": {"margin_inplane": [20, 10]}}})
    fails(workspace, "preprocess", ["preprocess.crop.margin_inplane = [20, 10]", "min < max"])
