"""results/teacher.py: the teacher scored beside the student, as the stages score (the parts
that need no trained run: reading a run's logged params back, and the paired table)."""

import importlib.util

import pandas as pd

from cvcl.inference.config import infer_config
from cvcl.params import Params
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("teacher", ROOT / "results" / "teacher.py")
teacher = importlib.util.module_from_spec(spec)
spec.loader.exec_module(teacher)


def test_a_runs_logged_params_give_back_the_infer_stages_window():
    logged = {
        "train.patch": "[64, 64, 32]",
        "infer.stride": "[16, 16, 8]",
        "infer.tta_flip": "False",
        "infer.batch_size": "4",
        "download.mirror": "None",
        "labeled": "8",
    }
    tree = teacher.nested(logged)
    assert tree["download"]["mirror"] is None and tree["labeled"] == 8
    cfg = infer_config(Params(tree))
    assert cfg.patch == (64, 64, 32) and cfg.stride == (16, 16, 8) and cfg.tta_flip is False


def test_teacher_minus_student_is_paired_by_seed_and_case():
    rows = []
    for seed in (1, 2):
        for case, dice in (("a", 0.70), ("b", 0.80), ("c", 0.75)):
            for network, shift in (("student", 0.0), ("teacher", 0.01 * seed)):
                rows.append(
                    {
                        "config": "mt",
                        "labeled": 8,
                        "seed": seed,
                        "case_id": case,
                        "network": network,
                        "dice": dice + shift,
                    }
                )
    # a configuration scored with one network only has nothing to pair
    rows.append({"config": "sup", "labeled": 8, "seed": 1, "case_id": "a", "network": "student", "dice": 0.9})
    table = teacher.format_differences(pd.DataFrame(rows))
    assert list(table["config"]) == ["mt"]
    row = table.iloc[0]
    assert row["seeds"] == 2 and row["student dice"] == 75.0 and row["teacher dice"] == 76.5
    assert row["teacher - student"].startswith("+1.50 [") and row["teacher - student"].endswith("better")
