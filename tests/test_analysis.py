import math

import numpy as np
import pandas as pd
import pytest

from cvcl import analysis


def fake_runs():
    rows = []
    for seed in (1, 2, 3):
        for labeled in (4, 8):
            for method, pcl, vcl, dice in [
                ("cvcl", 1.0, 1.0, 0.85),
                ("cvcl", 0.0, 0.0, 0.80),
                ("cvcl", 1.0, 0.0, 0.82),
                ("supervised", 1.0, 1.0, 0.75),
            ]:
                rows.append(
                    {
                        "run_id": f"{method}{pcl}{vcl}{labeled}{seed}",
                        "tags.mlflow.runName": "x",
                        "params.method": method,
                        "params.labeled": str(labeled),
                        "params.seed": str(seed),
                        "params.loss.pcl_weight": str(pcl),
                        "params.loss.vcl_weight": str(vcl),
                        "metrics.dice": dice + 0.01 * seed + 0.02 * (labeled == 8),
                        "metrics.jaccard": dice - 0.1,
                        "metrics.hd95": 10.0 - seed,
                        "metrics.asd": 2.0,
                    }
                )
    return analysis.tidy_runs(pd.DataFrame(rows))


def test_tidy_runs_names_configs_and_blanks_irrelevant_switches():
    df = fake_runs()
    assert set(df["config"]) == {
        "cvcl (pcl 1, vcl 1)",
        "cvcl (pcl 0, vcl 0) = mean teacher",
        "cvcl (pcl 1, vcl 0) = PCL only",
        "supervised",
    }
    # runs logged before loss.mt_weight named a switch had it at 1: it is not spelt
    assert (df.loc[df["method"] == "cvcl", "mt_weight"] == 1.0).all()
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
    again["dice"] = again["dice"] + 0.02  # a rerun of every supervised seed
    both = pd.concat([df, again], ignore_index=True)
    p = analysis.paired_comparison(both)
    sup = p[(p["baseline"] == "supervised") & (p["labeled"] == 4)].iloc[0]
    assert sup["pairs"] == 3 and sup["mean_diff"] == pytest.approx(9.0)


def test_runs_differing_in_another_param_are_separate_configs():
    raw = pd.DataFrame(
        [
            {
                "run_id": f"{norm}{seed}",
                "tags.mlflow.runName": "x",
                "params.method": "mean_teacher",
                "params.labeled": "4",
                "params.seed": str(seed),
                "params.loss.pcl_weight": "1",
                "params.loss.vcl_weight": "1",
                "params.model.norm": norm,
                "params.train.threads": str(seed),
                "params.train.split_bn": {1: None, 2: "False", 3: "False"}[seed] if norm == "instance" else "True",
                "metrics.dice": 0.8 + 0.1 * (norm == "instance"),
                "metrics.jaccard": 0.7,
                "metrics.hd95": 5.0,
                "metrics.asd": 1.0,
            }
            for norm, seeds in (("batch", (1, 2)), ("instance", (1, 2, 3)))
            for seed in seeds
        ]
    )
    df = analysis.tidy_runs(raw)
    # threads only choose how it runs; a run without split_bn (older) counts as its most common
    # value; the most common values need no suffix
    assert set(df["config"]) == {"mean_teacher [model.norm=batch train.split_bn=True]", "mean_teacher"}
    summary = analysis.summary_table(df).set_index("config")
    assert summary.loc["mean_teacher", "dice_mean"] == pytest.approx(90.0)
    assert summary.loc["mean_teacher [model.norm=batch train.split_bn=True]", "n"] == 2


def test_the_weight_grid_never_mixes_variants():
    raw = pd.DataFrame(
        [
            {
                "run_id": f"{norm}{pcl}{seed}",
                "tags.mlflow.runName": "x",
                "params.method": "cvcl",
                "params.labeled": "4",
                "params.seed": str(seed),
                "params.loss.pcl_weight": str(pcl),
                "params.loss.vcl_weight": "0",
                "params.model.norm": norm,
                "metrics.dice": {"batch": 0.7, "instance": 0.9}[norm] + 0.01 * pcl,
                "metrics.jaccard": 0.7,
                "metrics.hd95": 5.0,
                "metrics.asd": 1.0,
            }
            for norm, seeds in (("batch", (1,)), ("instance", (1, 2)))
            for pcl in (0, 1)
            for seed in seeds
        ]
    )
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


# -- per-case intervals -----------------------------------------------------------------------


def cvcl_config(runs, pcl, vcl):
    """The config name of the fake cvcl runs with these weights (names come from cvcl.methods)."""
    chosen = runs[(runs["method"] == "cvcl") & (runs["pcl_weight"] == pcl) & (runs["vcl_weight"] == vcl)]
    return chosen["config"].iloc[0]


def fake_per_case(runs, cases=12):
    """Per-case rows of ``runs``: each case's Dice scatters around the run's (known case effects)."""
    rows = []
    for _, run in runs.iterrows():
        for c in range(cases):
            effect = 0.03 * ((c * 7) % 5 - 2)  # the same case is easy or hard for every run
            rows.append(
                {
                    "run_id": run["run_id"],
                    "case_id": f"case{c:02d}",
                    "dice": run["dice"] + effect,
                    "jaccard": run["jaccard"] + effect,
                    "hd95": run["hd95"] + c % 3,
                    "asd": run["asd"],
                }
            )
    return pd.DataFrame(rows)


def test_paired_intervals_default_reference_against_each_baseline():
    runs = fake_runs()
    out = analysis.paired_intervals(runs, fake_per_case(runs), n_boot=2000)
    assert set(out["reference"]) == {cvcl_config(runs, 1, 1)}
    assert set(out["baseline"]) == {"supervised", cvcl_config(runs, 0, 0), cvcl_config(runs, 1, 0)}
    sup = out[(out["baseline"] == "supervised") & (out["labeled"] == 4)].iloc[0]
    assert (sup["seeds"], sup["cases"]) == (3, 12)
    # every (seed, case) differs by exactly 10 Dice points: a zero-width interval at +10
    assert sup["mean_diff"] == pytest.approx(10.0)
    assert sup["ci_low"] == pytest.approx(10.0) and sup["ci_high"] == pytest.approx(10.0)
    assert sup["resolved"] and sup["verdict"] == "+10.00 [+10.00, +10.00]: better"
    assert sup["wilcoxon_p"] < 0.01


def test_paired_intervals_pair_only_common_seeds_and_cases():
    runs = fake_runs()
    per_case = fake_per_case(runs)
    sup_seed3 = runs.loc[(runs["config"] == "supervised") & (runs["seed"] == 3), "run_id"]
    per_case = per_case[~per_case["run_id"].isin(sup_seed3)]  # supervised lacks seed 3
    cvcl_runs = runs.loc[runs["config"] == cvcl_config(runs, 1, 1), "run_id"]
    per_case = per_case[~(per_case["run_id"].isin(cvcl_runs) & (per_case["case_id"] == "case00"))]  # and cvcl a case
    out = analysis.paired_intervals(runs, per_case, pairs=[(cvcl_config(runs, 1, 1), "supervised")], n_boot=500)
    assert list(out["labeled"]) == [4, 8]
    assert list(out["seeds"]) == [2, 2] and list(out["cases"]) == [11, 11]


def test_paired_intervals_average_repeated_runs_and_follow_explicit_pairs():
    runs = fake_runs()
    again = runs[runs["config"] == "supervised"].copy()
    again["run_id"] = again["run_id"] + "-rerun"
    again["dice"] = again["dice"] + 0.02
    both = pd.concat([runs, again], ignore_index=True)
    pairs = [(cvcl_config(runs, 0, 0), "supervised"), (cvcl_config(runs, 1, 1), "supervised")]
    out = analysis.paired_intervals(both, fake_per_case(both), pairs=pairs, n_boot=500)
    assert list(zip(out["reference"], out["labeled"], strict=True)) == [
        (pairs[0][0], 4),
        (pairs[0][0], 8),
        (pairs[1][0], 4),
        (pairs[1][0], 8),
    ]
    assert out["mean_diff"].tolist() == pytest.approx([4.0, 4.0, 9.0, 9.0])


def test_paired_intervals_read_distances_lower_is_better():
    runs = fake_runs()
    runs.loc[runs["config"] == "supervised", "hd95"] += 2.0  # supervised: larger distances
    per_case = fake_per_case(runs)
    per_case["hd95"] += np.random.default_rng(0).normal(0, 0.5, len(per_case))
    out = analysis.paired_intervals(runs, per_case, metric="hd95", pairs=[(cvcl_config(runs, 1, 1), "supervised")])
    row = out.iloc[0]
    assert row["mean_diff"] == pytest.approx(-2.0, abs=0.3)  # raw units, not x100
    assert row["ci_high"] < 0 and row["verdict"].endswith(": better")
    dice = analysis.paired_intervals(runs, per_case, pairs=[("supervised", cvcl_config(runs, 1, 1))])
    assert dice.iloc[0]["mean_diff"] == pytest.approx(-10.0) and dice.iloc[0]["verdict"].endswith(": worse")


def test_format_intervals_says_not_resolved_when_the_interval_holds_zero():
    runs = fake_runs()
    per_case = fake_per_case(runs)
    # two configs equal on average: per-seed, per-case noise around zero
    tied = per_case["run_id"].isin(runs.loc[runs["config"] == cvcl_config(runs, 1, 0), "run_id"])
    ref = per_case["run_id"].isin(runs.loc[runs["config"] == cvcl_config(runs, 1, 1), "run_id"])
    per_case.loc[tied, "dice"] = per_case.loc[ref, "dice"].to_numpy() + np.random.default_rng(1).normal(
        0, 0.02, int(tied.sum())
    )
    out = analysis.paired_intervals(runs, per_case, n_boot=2000)
    table = analysis.format_intervals(out).set_index(["baseline", "labeled"])
    tie = table.loc[(cvcl_config(runs, 1, 0), 4)]
    assert tie["result"] == "not resolved"
    sup = table.loc[("supervised", 4)]
    assert sup["difference"] == "+10.00 [+10.00, +10.00]" and sup["result"] == "better"
    row = out[(out["baseline"] == cvcl_config(runs, 1, 0)) & (out["labeled"] == 4)].iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"] and not row["resolved"]


def test_chain_pairs_link_consecutive_methods_per_variant():
    runs = fake_runs()
    assert analysis.chain_pairs(runs) == [(cvcl_config(runs, 1, 1), "supervised")]  # no mean_teacher runs
    mt = runs[runs["config"] == "supervised"].copy()
    mt["method"], mt["config"], mt["run_id"] = "mean_teacher", "mean_teacher", mt["run_id"] + "mt"
    assert analysis.chain_pairs(pd.concat([runs, mt], ignore_index=True)) == [
        ("mean_teacher", "supervised"),
        (cvcl_config(runs, 1, 1), "mean_teacher"),
    ]
    assert analysis.chain_pairs(runs[runs["method"] == "supervised"]) == []


def test_paired_comparison_docstring_points_to_the_intervals():
    assert "paired_intervals" in analysis.paired_comparison.__doc__


def test_load_per_case_from_a_local_store(tmp_path, mlflow_store, monkeypatch):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    # load_runs sets MLflow's global URI: put it back afterwards for the other tests
    monkeypatch.setattr(utils, "_tracking_uri", getattr(utils, "_tracking_uri", None))
    mlflow.set_tracking_uri(mlflow_store)
    exp = MlflowClient(mlflow_store).create_experiment("cvcl-toy", artifact_location=(tmp_path / "mlruns").as_uri())
    params = {"labeled": 4, "loss.pcl_weight": 1.0, "loss.vcl_weight": 1.0}
    logged = {}
    for method, seed, artifact in (("cvcl", 1, True), ("supervised", 1, True), ("supervised", 2, False)):
        with mlflow.start_run(experiment_id=exp) as run:
            mlflow.log_params({**params, "method": method, "seed": seed})
            mlflow.log_metrics({"dice": 0.8, "jaccard": 0.7, "hd95": 3.0, "asd": 1.0})
            if artifact:
                csv = tmp_path / method / "per_case.csv"
                csv.parent.mkdir()
                csv.write_text(
                    "case_id,dice,jaccard,hd95,asd,distance_unit\n"
                    f"007,0.9,0.8,{'nan' if method == 'cvcl' else 2.5},1.0,voxel\n"
                    "case_b,0.7,0.6,4.0,1.5,voxel\n"
                )
                mlflow.log_artifact(str(csv))
            logged[run.info.run_id] = (method, seed)
    runs = analysis.load_runs("cvcl-toy", mlflow_store)
    assert len(runs) == 3
    with pytest.warns(UserWarning, match="no per_case.csv"):
        per_case = analysis.load_per_case(runs, mlflow_store)
    assert list(per_case.columns) == [
        "run_id",
        "config",
        "variant",
        "labeled",
        "seed",
        "case_id",
        "dice",
        "jaccard",
        "hd95",
        "asd",
    ]
    assert len(per_case) == 4 and set(per_case["run_id"]) < set(logged)
    assert {logged[r] for r in per_case["run_id"]} == {("cvcl", 1), ("supervised", 1)}
    assert set(per_case["case_id"]) == {"007", "case_b"}  # ids stay strings, leading zeros kept
    cvcl = per_case[per_case["config"] == cvcl_config(runs, 1, 1)].set_index("case_id")
    assert cvcl.loc["007", "dice"] == pytest.approx(0.9) and math.isnan(cvcl.loc["007", "hd95"])
    assert (per_case["labeled"] == 4).all() and (per_case["seed"] == 1).all()
    out = analysis.paired_intervals(runs, per_case, n_boot=200)
    assert list(out["baseline"]) == ["supervised"] and out.iloc[0]["cases"] == 2


def test_parameters_tuned_per_method_name_configs_and_still_pair():
    rows = []
    for seed in (1, 2):
        for method, pcl, vcl, consistency, lr, dice in [
            ("supervised", 1, 1, "1.0", "0.03", 0.70),
            ("mean_teacher", 1, 1, "0.1", "0.01", 0.74),
            ("cvcl", 1, 0.6, "1.0", "0.01", 0.76),
        ]:
            rows.append(
                {
                    "run_id": f"{method}{seed}",
                    "tags.mlflow.runName": "x",
                    "params.method": method,
                    "params.labeled": "4",
                    "params.seed": str(seed),
                    "params.loss.pcl_weight": str(pcl),
                    "params.loss.vcl_weight": str(vcl),
                    "params.loss.consistency": consistency,
                    "params.train.lr": lr,
                    "metrics.dice": dice + 0.01 * seed,
                    "metrics.jaccard": dice,
                    "metrics.hd95": 5.0,
                    "metrics.asd": 1.0,
                }
            )
    raw = pd.DataFrame(rows)
    tuned = analysis.tidy_runs(raw, tuned=("loss.consistency", "train.lr"))
    # supervised's loss.consistency (1.0, unused by it) is not named: among the runs that use it,
    # 0.1 and 1.0 tie and the first by name counts as the common value
    assert set(tuned["config"]) == {
        "supervised {train.lr=0.03}",
        "mean_teacher",
        "cvcl (pcl 1, vcl 0.6) {loss.consistency=1.0}",
    }
    assert set(tuned["variant"]) == {""}
    assert len(analysis.paired_comparison(tuned)) == 2  # cvcl against both, as methods at their own best
    # without the declaration the same runs are three variants that never pair
    plain = analysis.tidy_runs(raw)
    assert len(set(plain["variant"])) == 3 and analysis.paired_comparison(plain).empty


def test_last_iteration_view_takes_the_last_figures_and_keeps_older_last_runs():
    raw = pd.DataFrame(
        {
            "run_id": ["new-best", "new-last", "old-last", "old-best"],
            "tags.checkpoint": ["best_val", "last", None, "best_val"],
            **{f"metrics.{m}": [0.8, 0.7, 0.6, 0.9] for m in analysis.METRICS},
            **{f"metrics.{m}_last": [0.75, 0.7, np.nan, np.nan] for m in analysis.METRICS},
        }
    )
    view = analysis.last_iteration_view(raw)
    for m in analysis.METRICS:
        assert view[f"metrics.{m}"].tolist()[:3] == [0.75, 0.7, 0.6]
        assert np.isnan(view[f"metrics.{m}"].iloc[3])  # a best_val run without its last figures: none
    assert raw["metrics.dice"].tolist() == [0.8, 0.7, 0.6, 0.9]  # the input is not changed
