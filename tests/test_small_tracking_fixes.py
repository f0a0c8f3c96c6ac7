"""Issue 28, item 4: run searches page through every run; DVC 3's lock entries give their hash;
a Python without tarfile's extraction filters is refused in one line."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cvcl.errors import DataError
from cvcl.sources.archive import safe_extract
from cvcl.tracking import store
from cvcl.tracking.naming import data_version
from cvcl.tracking.paging import all_runs


class Page(list):
    """A PagedList: the runs of one page and the next page's token."""

    def __init__(self, items: list[Any], token: str | None) -> None:
        super().__init__(items)
        self.token = token


class PagingClient:
    """``search_runs`` over ``n`` runs, pages of ``max_results``, tokens as MLflow hands them out."""

    def __init__(self, n: int, fail_once_at: str | None = None) -> None:
        self.runs = [SimpleNamespace(info=SimpleNamespace(run_id=f"run{i}")) for i in range(n)]
        self.calls: list[dict[str, Any]] = []
        self.fail_once_at = fail_once_at

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        run_view_type: int = 1,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> Page:
        import requests

        self.calls.append(
            {"ids": experiment_ids, "filter": filter_string, "max": max_results, "order": order_by, "token": page_token}
        )
        if page_token is not None and page_token == self.fail_once_at:
            self.fail_once_at = None
            raise requests.ConnectionError("the server restarts")
        start = int(page_token) if page_token else 0
        end = start + max_results
        return Page(self.runs[start:end], str(end) if end < len(self.runs) else None)


def test_all_runs_follows_the_page_tokens_to_the_end():
    client = PagingClient(6)
    runs = all_runs(client, ["1"], "attributes.status = 'FINISHED'", ["attributes.start_time ASC"], page_size=2)
    assert [r.info.run_id for r in runs] == [f"run{i}" for i in range(6)]
    assert [c["token"] for c in client.calls] == [None, "2", "4"]  # 3 pages of 2
    assert all(c["max"] == 2 and c["order"] == ["attributes.start_time ASC"] for c in client.calls)
    assert client.calls[0]["filter"] == "attributes.status = 'FINISHED'" and client.calls[0]["ids"] == ["1"]


def test_all_runs_with_a_partial_last_page_and_with_none():
    assert len(all_runs(PagingClient(5), ["1"], page_size=2)) == 5
    assert all_runs(PagingClient(0), ["1"], page_size=2) == []


def test_a_page_that_fails_for_a_moment_is_asked_again(monkeypatch, capsys):
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    client = PagingClient(6, fail_once_at="4")
    assert len(all_runs(client, ["1"], page_size=2)) == 6
    assert [c["token"] for c in client.calls] == [None, "2", "4", "4"]


def test_a_token_handed_back_twice_stops_the_listing():
    class Looping:
        def search_runs(self, *args: Any, **kwargs: Any) -> Page:
            return Page([object()], "same")

    with pytest.raises(RuntimeError, match="page token 'same' twice"):
        all_runs(Looping(), ["1"])


def test_export_records_pages_past_one_page(mlflow_store, tmp_path, monkeypatch):
    """export_records uses the pages: with a page of 2, 5 runs all come out."""
    import mlflow

    from cvcl.tracking import paging
    from cvcl.tracking.record_store import export_records

    client = mlflow.MlflowClient(mlflow_store)
    exp = client.create_experiment("paged")
    for i in range(5):
        run = client.create_run(exp, run_name=f"r{i}")
        client.log_param(run.info.run_id, "i", i)
        client.set_terminated(run.info.run_id)
    original = paging.all_runs
    monkeypatch.setattr(paging, "all_runs", lambda *a, **k: original(*a, **{**k, "page_size": 2}))
    written = export_records("paged", tmp_path / "records", say=lambda _: None)
    assert len(written) == 5


# dvc.lock: DVC 3 and DVC 2 entries


def _lock(tmp_path: Path, out: str) -> Path:
    lock = tmp_path / "dvc.lock"
    lock.write_text(f"schema: '2.0'\nstages:\n  preprocess:\n    cmd: x\n    outs:\n{out}")
    return lock


def test_data_version_reads_the_hash_of_a_dvc3_lock_entry(tmp_path):
    lock = _lock(
        tmp_path,
        "    - path: data/processed\n      hash: md5\n      md5: 0123abcd.dir\n      size: 12\n      nfiles: 3\n",
    )
    assert data_version(lock) == "0123abcd.dir"  # not "md5", the algorithm's name


def test_data_version_reads_the_value_under_the_named_algorithm(tmp_path):
    lock = _lock(tmp_path, "    - path: data/processed\n      hash: sha256\n      sha256: feed\n      md5: stale\n")
    assert data_version(lock) == "feed"


def test_data_version_reads_a_dvc2_lock_entry(tmp_path):
    assert data_version(_lock(tmp_path, "    - path: data/processed\n      md5: abc.dir\n      size: 1\n")) == "abc.dir"
    assert data_version(_lock(tmp_path, "    - path: data/processed\n      hash: md5\n      size: 1\n")) is None


# tar archives on a Python without extraction filters


def _tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo("case/image.nii")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return path


def test_a_python_without_tar_filters_is_refused_in_one_line(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "la.tar.gz")

    def old_extractall(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        if kwargs:  # as Python 3.11.3 and older answer the keyword
            raise TypeError(f"extractall() got an unexpected keyword argument {next(iter(kwargs))!r}")

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(DataError) as caught:
        safe_extract(archive, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{archive}: needs Python 3.10.12+, 3.11.4+ or 3.12+") and "\n" not in message
    assert not (tmp_path / "out" / "case").exists()


def test_a_type_error_on_a_python_with_filters_is_not_hidden(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "la.tar")

    def broken(self, *args, **kwargs):
        raise TypeError("something else")

    monkeypatch.setattr(tarfile.TarFile, "extractall", broken)
    with pytest.raises(TypeError, match="something else"):
        safe_extract(archive, tmp_path / "out")


def test_tar_archives_still_extract(tmp_path):
    safe_extract(_tar(tmp_path / "la.tgz"), tmp_path / "out")
    assert (tmp_path / "out" / "case" / "image.nii").read_bytes() == b"hello"
