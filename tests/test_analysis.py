import math

import pandas as pd
import pytest

from cvcl import analysis


def fake_runs():
    rows = []
    for seed in (1, 2, 3):
        for labeled in (4, 8):
            for method, pcl, vcl, dice in [("cvcl", 1.0, 1.0, 0.85), ("cvcl", 0.0, 0.0, 0.80),
                                           ("cvcl", 1.0, 0.0, 0.82), ("supervised", 1.0, 1.0, 0.75)]:
                rows.append({"run_id": f"{method}{pcl}{vcl}{labeled}{seed}", "tags.mlflow.runName": "x",
                             "params.method": method, "params.labeled": str(labeled), "params.seed": str(seed),
                             "params.loss.pcl_weight": str(pcl), "params.loss.vcl_weight": str(vcl),
                             "metrics.dice": dice + 0.01 * seed + 0.02 * (labeled == 8),
                             "metrics.jaccard": dice - 0.1, "metrics.hd95": 10.0 - seed, "metrics.asd": 2.0})
    return analysis.tidy_runs(pd.DataFrame(rows))


def test_tidy_runs_names_configs_and_blanks_irrelevant_switches():
    df = fake_runs()
    assert set(df["config"]) == {"cvcl (pcl 1, vcl 1)", "cvcl (pcl 0, vcl 0) = mean teacher",
                                 "cvcl (pcl 1, vcl 0)", "supervised"}
    assert df.loc[df["method"] == "supervised", "pcl_weight"].isna().all()


def test_summary_table_means_and_stds_over_seeds():
    s = analysis.summary_table(fake_runs())
    row = s[(s["config"] == "cvcl (pcl 1, vcl 1)") & (s["labeled"] == 4)].iloc[0]
    assert row["n"] == 3
    assert row["dice_mean"] == pytest.approx(87.0)
    assert row["dice_std"] == pytest.approx(1.0)
    assert row["hd95_mean"] == pytest.approx(8.0)
    table = analysis.formatted_table(s)
    assert table.loc[0, "dice"].count("±") == 1


def test_paired_comparison_by_seed():
    p = analysis.paired_comparison(fake_runs())
    sup = p[(p["baseline"] == "supervised") & (p["labeled"] == 4)].iloc[0]
    assert sup["pairs"] == 3 and sup["wins"] == 3
    assert sup["mean_diff"] == pytest.approx(10.0)
    assert math.isnan(sup["p_value"])  # identical differences: no variance, no t-test


def test_dice_grid_over_the_switches():
    grid = analysis.dice_grid(fake_runs(), 8)
    assert grid.loc[1.0, 1.0] == pytest.approx(89.0)
    assert grid.loc[0.0, 0.0] == pytest.approx(84.0)


def test_the_full_cvcl_config_is_the_one_with_both_terms_on():
    df = fake_runs()
    assert analysis.full_cvcl_config(df) == "cvcl (pcl 1, vcl 1)"
    assert analysis.full_cvcl_config(df[df["method"] != "cvcl"]) is None
    small = df.copy()
    small.loc[small["config"] == "cvcl (pcl 1, vcl 1)", "vcl_weight"] = 0.05
    small.loc[small["config"] == "cvcl (pcl 1, vcl 1)", "config"] = "cvcl (pcl 1, vcl 0.05)"
    assert analysis.full_cvcl_config(small) == "cvcl (pcl 1, vcl 0.05)"
    assert set(analysis.paired_comparison(small)["baseline"]) >= {"supervised"}


def test_paired_comparison_averages_repeated_runs_of_a_seed():
    df = fake_runs()
    again = df[df["config"] == "supervised"].copy()
    again["dice"] = again["dice"] + 0.02                       # a rerun of every supervised seed
    both = pd.concat([df, again], ignore_index=True)
    p = analysis.paired_comparison(both)
    sup = p[(p["baseline"] == "supervised") & (p["labeled"] == 4)].iloc[0]
    assert sup["pairs"] == 3 and sup["mean_diff"] == pytest.approx(9.0)


def test_runs_differing_in_another_param_are_separate_configs():
    raw = pd.DataFrame([
        {"run_id": f"{norm}{seed}", "tags.mlflow.runName": "x", "params.method": "mean_teacher",
         "params.labeled": "4", "params.seed": str(seed), "params.loss.pcl_weight": "1",
         "params.loss.vcl_weight": "1", "params.model.norm": norm, "params.train.threads": str(seed),
         "params.train.split_bn": {1: None, 2: "False", 3: "False"}[seed] if norm == "instance" else "True",
         "metrics.dice": 0.8 + 0.1 * (norm == "instance"), "metrics.jaccard": 0.7, "metrics.hd95": 5.0,
         "metrics.asd": 1.0}
        for norm, seeds in (("batch", (1, 2)), ("instance", (1, 2, 3))) for seed in seeds])
    df = analysis.tidy_runs(raw)
    # threads only choose how it runs; a run without split_bn (older) counts as its most common
    # value; the most common values need no suffix
    assert set(df["config"]) == {"mean_teacher [model.norm=batch train.split_bn=True]", "mean_teacher"}
    summary = analysis.summary_table(df).set_index("config")
    assert summary.loc["mean_teacher", "dice_mean"] == pytest.approx(90.0)
    assert summary.loc["mean_teacher [model.norm=batch train.split_bn=True]", "n"] == 2


def test_the_weight_grid_never_mixes_variants():
    raw = pd.DataFrame([
        {"run_id": f"{norm}{pcl}{seed}", "tags.mlflow.runName": "x", "params.method": "cvcl",
         "params.labeled": "4", "params.seed": str(seed), "params.loss.pcl_weight": str(pcl),
         "params.loss.vcl_weight": "0", "params.model.norm": norm,
         "metrics.dice": {"batch": 0.7, "instance": 0.9}[norm] + 0.01 * pcl, "metrics.jaccard": 0.7,
         "metrics.hd95": 5.0, "metrics.asd": 1.0}
        for norm, seeds in (("batch", (1,)), ("instance", (1, 2))) for pcl in (0, 1) for seed in seeds])
    df = analysis.tidy_runs(raw)
    assert analysis.dice_grid(df, 4).loc[1.0, 0.0] == pytest.approx(91.0)  # the variant with most runs
    assert analysis.dice_grid(df, 4, variant="model.norm=batch").loc[0.0, 0.0] == pytest.approx(70.0)
    assert set(df["variant"]) == {"", "model.norm=batch"}


def test_paired_comparison_pairs_only_runs_of_the_same_variant():
    df = fake_runs()
    longer = df.copy()
    longer["dice"] = longer["dice"] + 0.05
    longer["variant"] = "train.iterations=1800"
    longer["config"] = longer["config"] + " [train.iterations=1800]"
    p = analysis.paired_comparison(pd.concat([df, longer], ignore_index=True))
    assert set(p["reference"]) == {"cvcl (pcl 1, vcl 1)", "cvcl (pcl 1, vcl 1) [train.iterations=1800]"}
    for _, row in p.iterrows():
        assert ("1800" in row["reference"]) == ("1800" in row["baseline"])
    sup = p[(p["baseline"] == "supervised [train.iterations=1800]") & (p["labeled"] == 4)].iloc[0]
    assert sup["mean_diff"] == pytest.approx(10.0)
