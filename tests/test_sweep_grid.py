"""The ablation grid `make sweep` queues: labeled counts, on-weights, seeds."""

import shutil
from pathlib import Path

import pytest

from cvcl.commands import sweep

ROOT = Path(__file__).resolve().parents[1]


def test_labeled_counts_are_ten_and_twenty_percent():
    assert sweep.labeled_counts(80) == [8, 16]
    assert sweep.labeled_counts(40) == [4, 8]
    assert sweep.labeled_counts(5) == [1]  # rounding collapses both to one count


def test_commands_cover_the_grid_with_the_given_on_weights():
    cvcl_cmd, supervised_cmd = sweep.commands(80, seeds=(1, 2), on=(1.0, 0.6))
    assert "labeled=8,16" in cvcl_cmd and "seed=1,2" in cvcl_cmd
    assert "loss.pcl_weight=0,1" in cvcl_cmd and "loss.vcl_weight=0,0.6" in cvcl_cmd
    assert "method=supervised" in supervised_cmd and not any("weight" in a for a in supervised_cmd)


def test_on_weights_come_from_params_and_fall_back_to_one(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    pcl, vcl = sweep.on_weights(tmp_path)
    assert pcl > 0 and vcl > 0
    (tmp_path / "params.yaml").write_text(text.replace("vcl_weight:", "vcl_weight: 0.0  #", 1))
    assert sweep.on_weights(tmp_path)[1] == 1.0


def test_dry_run_rejects_non_positive_on_weights(capsys):
    with pytest.raises(SystemExit):
        sweep.main(["--dry-run", "--on", "1", "0"])
    assert "--on" in capsys.readouterr().err


@pytest.mark.parametrize(
    "dataset,key,n", [("synthetic-la", "synthetic", 40), ("synthetic-brats", "synthetic_brats", 20)]
)
def test_training_cases_of_each_generator_come_from_its_own_section(tmp_path, dataset, key, n):
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"] = dataset
    params["download"]["synthetic"]["n_train"] = 40
    params["download"]["synthetic_brats"]["n_train"] = 20
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert sweep.training_cases(tmp_path) == n
