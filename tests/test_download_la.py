"""The `la` download end to end against a loopback HTTP mirror of the shared LA sample."""

import hashlib
import json
import shutil

import pytest

from cvcl import datasets
from cvcl.datasets.la import UA_MT
from cvcl.datasets.la import source as la
from cvcl.errors import DataError, ParamError
from cvcl.sources import fetch
from cvcl.sources.config import DownloadConfig, SourceSettings
from cvcl.sources.layouts import LA_H5, LA_RELEASE_DIR
from cvcl.sources.transfer import Fetcher
from tests.conftest import LA_SAMPLE
from tests.http_mirror import Mirror

pytestmark = pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available")

MANIFEST = la.read_manifest()


def sample_lists():
    return {s: (LA_SAMPLE / f"{s}.list").read_text().split() for s in ("train", "test")}


def rel(case_id):
    return f"{LA_RELEASE_DIR}/{case_id}/{LA_H5}"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def params(mirror):
    return SourceSettings(DownloadConfig(mirror=mirror))


@pytest.fixture
def mirror():
    m = Mirror(LA_SAMPLE)
    yield m
    m.close()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def fetcher(tmp_path, sleeps):
    # a fake sleep: backoff is recorded, never waited for, so no test depends on timing
    return Fetcher(tmp_path / "cache", retries=2, backoff_s=1.0, sleep=sleeps.append)


def test_mirror_download_is_verified_and_laid_out_like_the_release(mirror, fetcher, tmp_path):
    out = tmp_path / "raw"
    record = fetch(datasets.get("la"), params(mirror.url), out, progress=False, fetcher=fetcher)
    lists = sample_lists()
    cases = sorted(p.parent.name for p in (out / LA_RELEASE_DIR).glob(f"*/{LA_H5}"))
    assert cases == sorted(lists["train"] + lists["test"])
    for case_id in cases:
        assert sha256(out / rel(case_id)) == MANIFEST[case_id].sha256
        assert (out / rel(case_id)).read_bytes() == (LA_SAMPLE / rel(case_id)).read_bytes()
    assert (out / "train.list").read_text().split() == lists["train"]
    assert (out / "test.list").read_text().split() == lists["test"]
    sums = dict(line.split("  ", 1)[::-1] for line in (out / "files.sha256").read_text().splitlines())
    assert sums == {rel(c): MANIFEST[c].sha256 for c in cases}
    assert record["lists"] == "ua-mt" and record["counts"] == {"train": 8, "test": 4}
    assert json.loads((out / "protocol.json").read_text()) == record
    # the space in the folder name travelled URL-encoded and every case was asked for once
    assert sorted(p for p, _ in mirror.requests if p.endswith(LA_H5)) == sorted(rel(c) for c in cases)


def test_a_verified_file_is_never_fetched_twice(mirror, fetcher, tmp_path):
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert len(mirror.gets(LA_H5)) == 12
    shutil.rmtree(tmp_path / "raw")  # what DVC does before it reruns the stage
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert len(mirror.gets(LA_H5)) == 12  # no new transfers: served from the verified cache
    assert len(list((tmp_path / "raw" / LA_RELEASE_DIR).glob(f"*/{LA_H5}"))) == 12


def test_a_damaged_cache_entry_is_fetched_again(mirror, fetcher, tmp_path):
    case_id = sample_lists()["train"][0]
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "a", progress=False, fetcher=fetcher)
    cached = fetcher.store_path(MANIFEST[case_id].sha256)
    cached.write_bytes(b"bit rot")
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "b", progress=False, fetcher=fetcher)
    assert mirror.gets(rel(case_id)) == [None, None]
    assert sha256(cached) == MANIFEST[case_id].sha256


def test_local_folder_mirror(fetcher, tmp_path):
    record = fetch(datasets.get("la"), params(str(LA_SAMPLE)), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert record["counts"] == {"train": 8, "test": 4}
    for case_id in sample_lists()["test"]:
        assert sha256(tmp_path / "raw" / rel(case_id)) == MANIFEST[case_id].sha256
        assert fetcher.cached(MANIFEST[case_id].sha256) is not None


def test_corrupted_file_is_rejected_with_a_clear_error_and_nothing_written(mirror, fetcher, tmp_path):
    bad = sample_lists()["train"][2]
    mirror.corrupt.add(rel(bad))
    out = tmp_path / "raw"
    with pytest.raises(DataError) as info:
        fetch(datasets.get("la"), params(mirror.url), out, progress=False, fetcher=fetcher)
    message = str(info.value)
    assert "sha256 mismatch" in message and bad in message and "\n" not in message
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["cache"]
    assert not list((fetcher.cache / "partial").iterdir())  # the bad bytes are gone
    assert len(mirror.gets(rel(bad))) == 1  # a complete fresh transfer that fails is not retried
    # the cases verified before the bad one stay cached: fixing the mirror costs one transfer
    good = sample_lists()["train"][:2]
    assert all(fetcher.cached(MANIFEST[c].sha256) for c in good)


def test_interrupted_transfer_resumes_with_a_range_request(mirror, fetcher, sleeps, tmp_path):
    case_id = sample_lists()["test"][1]
    size = MANIFEST[case_id].bytes
    mirror.truncate[rel(case_id)] = 1_000_000
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert mirror.gets(rel(case_id)) == [None, "bytes=1000000-"]
    assert mirror.sent[rel(case_id)] == size  # no byte sent twice
    assert sha256(tmp_path / "raw" / rel(case_id)) == MANIFEST[case_id].sha256
    assert sleeps == [1.0]


def test_partial_file_of_an_earlier_run_is_resumed(mirror, fetcher, tmp_path):
    case_id = sample_lists()["train"][5]
    entry = MANIFEST[case_id]
    part = fetcher.partial_path(entry.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes((LA_SAMPLE / rel(case_id)).read_bytes()[:700_000])
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert mirror.gets(rel(case_id)) == ["bytes=700000-"]
    assert mirror.sent[rel(case_id)] == entry.bytes - 700_000
    assert sha256(tmp_path / "raw" / rel(case_id)) == entry.sha256


def test_stale_partial_that_fails_the_checksum_is_fetched_again_from_zero(mirror, fetcher, tmp_path):
    case_id = sample_lists()["train"][0]
    entry = MANIFEST[case_id]
    part = fetcher.partial_path(entry.sha256)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 4096)  # not the start of this file
    fetcher.fetch(f"{mirror.url}/{rel(case_id).replace(' ', '%20')}", entry.sha256, entry.bytes)
    assert mirror.gets(rel(case_id)) == ["bytes=4096-", None]
    assert sha256(fetcher.store_path(entry.sha256)) == entry.sha256


def test_transient_errors_are_retried_with_backoff(mirror, fetcher, sleeps, tmp_path):
    case_id = sample_lists()["train"][1]
    mirror.errors[rel(case_id)] = [503, 500]
    fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert len(mirror.gets(rel(case_id))) == 3
    assert sleeps == [1.0, 2.0]  # exponential backoff


def test_retries_run_out_with_a_message_to_rerun(mirror, fetcher, tmp_path):
    case_id = sample_lists()["train"][1]
    mirror.errors[rel(case_id)] = [503] * 5
    with pytest.raises(DataError, match=r"failed after 3 attempts .*rerun the stage to resume"):
        fetch(datasets.get("la"), params(mirror.url), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert not (tmp_path / "raw").exists()


def test_missing_file_is_not_retried(fetcher, tmp_path):
    folder = tmp_path / "partial-mirror"
    (folder / LA_RELEASE_DIR).mkdir(parents=True)
    case_id = next(iter(MANIFEST))
    (folder / "train.list").write_text(case_id + "\n")
    (folder / "test.list").write_text("")
    m = Mirror(folder)
    try:
        with pytest.raises(DataError, match="HTTP 404"):
            fetch(datasets.get("la"), params(m.url), tmp_path / "raw", progress=False, fetcher=fetcher)
        assert len(m.gets(rel(case_id))) == 1
    finally:
        m.close()


@pytest.mark.parametrize(
    "train_list,message",
    [
        ("NOT_A_CASE\n", "NOT_A_CASE, which is not in the LA release manifest"),
        ("UPT6DX9IQY9JAZ7HJKA7\n", "a test case of the release"),
    ],
)
def test_mirror_lists_must_name_release_cases_of_the_same_subset(fetcher, tmp_path, train_list, message):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "train.list").write_text(train_list)
    (folder / "test.list").write_text("")
    with pytest.raises(DataError, match=message) as info:
        fetch(datasets.get("la"), params(str(folder)), tmp_path / "raw", progress=False, fetcher=fetcher)
    assert "train.list" in str(info.value)
    assert not (tmp_path / "raw").exists()


def test_mirror_with_only_one_list_is_an_error(fetcher, tmp_path):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "train.list").write_text(next(iter(MANIFEST)) + "\n")
    with pytest.raises(DataError, match="test.list: not found"):
        fetch(datasets.get("la"), params(str(folder)), tmp_path / "raw", progress=False, fetcher=fetcher)


def test_without_a_mirror_all_100_cases_come_from_the_public_url(fetcher):
    base, cases, lists = la.plan(la.LAConfig(None), fetcher, UA_MT)
    assert base == la.PUBLIC_BASE and len(cases) == 100
    first = cases[0].case_id
    assert la.case_source(base, first) == (
        f"https://raw.githubusercontent.com/yulequan/UA-MT/master/data/2018LA_Seg_Training%20Set/{first}/mri_norm2.h5"
    )
    assert lists.lists["train"] == [c for c, f in MANIFEST.items() if f.split == "train"]
    assert len(lists.lists["train"]) == 80 and len(lists.lists["test"]) == 20


def test_a_mirror_that_is_neither_a_folder_nor_a_url_is_a_param_error(tmp_path):
    with pytest.raises(ParamError, match="download.mirror"):
        fetch(datasets.get("la"), params(str(tmp_path / "nowhere")), tmp_path / "raw", progress=False)
    assert not (tmp_path / "raw").exists()


def test_a_corrupt_local_mirror_file_is_reported_even_when_the_cache_saves_the_run(fetcher, tmp_path, capsys):
    fetch(
        datasets.get("la"), params(str(LA_SAMPLE)), tmp_path / "raw1", progress=False, fetcher=fetcher
    )  # fills the cache
    capsys.readouterr()
    copy = tmp_path / "mirror"
    shutil.copytree(LA_SAMPLE, copy)
    bad = sample_lists()["test"][0]
    damaged = copy / rel(bad)
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    record = fetch(datasets.get("la"), params(str(copy)), tmp_path / "raw2", progress=False, fetcher=fetcher)
    assert record["counts"] == {"train": 8, "test": 4}  # the verified cached copy was used
    assert sha256(tmp_path / "raw2" / rel(bad)) == MANIFEST[bad].sha256
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "wrong sha256" in warnings[0]
