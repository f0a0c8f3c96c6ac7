import pytest

from cvcl.io.atomic import atomic_path, write_json


def test_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert '"a": 1' in target.read_text()  # the old complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_directory_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "predictions"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").exists()
    with pytest.raises(ValueError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "b.txt").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"]
