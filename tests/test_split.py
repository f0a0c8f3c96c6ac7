import csv

import pytest

from cvcl.data.split import make_split
from cvcl.errors import ParamError


def processed(tmp_path, n=10, lists=True):
    ids = [f"c{i:02d}" for i in range(n)]
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["case_id"])
        w.writeheader()
        w.writerows({"case_id": c} for c in ids)
    if lists:
        (tmp_path / "train.list").write_text("\n".join(reversed(ids[:8])) + "\n")
        (tmp_path / "test.list").write_text("\n".join(ids[8:]) + "\n")
    return ids


def test_protocol_takes_the_first_cases_of_train_list(tmp_path):
    processed(tmp_path)
    s = make_split(tmp_path, labeled=3)
    assert s["protocol"] == "fixed-lists"
    assert s["labeled"] == ["c07", "c06", "c05"]
    assert s["unlabeled"] == ["c04", "c03", "c02", "c01", "c00"]
    assert s["test"] == ["c08", "c09"] and s["val"] == []


def test_protocol_validation_cases_come_from_the_end_of_train_list(tmp_path):
    processed(tmp_path)
    s = make_split(tmp_path, labeled=2, val=2)
    assert s["val"] == ["c01", "c00"]
    assert "c01" not in s["unlabeled"] and "c00" not in s["unlabeled"]


def test_random_split_is_seeded_and_disjoint(tmp_path):
    ids = processed(tmp_path, lists=False)
    a = make_split(tmp_path, labeled=2, strategy="random", test_fraction=0.2, val=1, seed=3)
    b = make_split(tmp_path, labeled=2, strategy="random", test_fraction=0.2, val=1, seed=3)
    c = make_split(tmp_path, labeled=2, strategy="random", test_fraction=0.2, val=1, seed=4)
    assert a == b and a != c
    groups = [a["labeled"], a["unlabeled"], a["val"], a["test"]]
    assert sorted(sum(groups, [])) == ids
    assert len(a["test"]) == 2 and len(a["val"]) == 1 and a["protocol"] == "random"


@pytest.mark.parametrize("labeled", [0, 9])
def test_labeled_out_of_range_is_a_param_error(tmp_path, labeled):
    processed(tmp_path)
    with pytest.raises(ParamError, match=r"labeled = .*expected an integer in \[1, 8\]"):
        make_split(tmp_path, labeled=labeled)


def test_protocol_without_lists_asks_for_random(tmp_path):
    processed(tmp_path, lists=False)
    with pytest.raises(ParamError, match="split.strategy"):
        make_split(tmp_path, labeled=2)
