"""results/bn_statistics.py: its ``running`` score is the pipeline's own validation Dice, and the
re-estimated statistics are a plain average over the crops it draws."""

import importlib.util
import json

import numpy as np
import torch

from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import ModelConfig
from cvcl.training.validation import make_validator
from tests.conftest import ROOT
from tests.helpers import bn_vnet_trained_a_little, write_box_cases

spec = importlib.util.spec_from_file_location("bn_statistics", ROOT / "results" / "bn_statistics.py")
bn_statistics = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bn_statistics)

CFG = ModelConfig(in_channels=1, n_classes=2, base_filters=2, embed_dim=8, norm="batch", dropout=0.0)
PATCH = (32, 32, 16)


def _trained_a_little() -> torch.nn.Module:
    return bn_vnet_trained_a_little(CFG, PATCH)


def test_running_is_the_pipelines_validation_and_the_script_prints_all_three(tmp_path, capsys):
    processed = write_box_cases(tmp_path / "processed", shape=(48, 48, 24), n=4)
    (tmp_path / "split.json").write_text(
        json.dumps({"labeled": ["c0", "c1"], "unlabeled": ["c2"], "val": ["c3"], "test": []})
    )
    net = _trained_a_little()
    save_checkpoint(tmp_path / "model.pt", net, None, CFG, {"method": "supervised"})
    pipeline = make_validator(processed, ["c3"], PATCH, torch.device("cpu"))(net)

    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--processed", str(processed)]
    argv += ["--split", str(tmp_path / "split.json"), "--patch", "32", "32", "16", "--batches", "3"]
    assert bn_statistics.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["running"] == pipeline
    assert printed["norm"] == "batch" and printed["val_cases"] == 1
    assert all(0.0 <= printed[k] <= 1.0 for k in ("running", "batch", "window", "re_estimated"))


def test_re_estimated_statistics_are_the_plain_average_over_the_drawn_batches():
    net = _trained_a_little()
    images = [np.random.default_rng(i).normal(3.0, 2.0, (1, 40, 40, 20)).astype(np.float32) for i in range(3)]
    bn_statistics.re_estimate(net, images, PATCH, batches=4)
    first = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert int(first.num_batches_tracked) == 4 and first.momentum is None
    # the first layer sees the crops before any weight: its mean is the crops' mean through the
    # first convolution, far from the N(1, 2) inputs the little training saw
    before = _trained_a_little()
    stem = next(m for m in before.modules() if isinstance(m, torch.nn.BatchNorm3d))
    assert not torch.allclose(first.running_mean, stem.running_mean)
    assert torch.isfinite(first.running_var).all() and (first.running_var > 0).all()


def test_running_means_running_even_for_a_checkpoint_saved_with_window_statistics(tmp_path, capsys):
    processed = write_box_cases(tmp_path / "processed", shape=(48, 48, 24), n=4)
    (tmp_path / "split.json").write_text(
        json.dumps({"labeled": ["c0", "c1"], "unlabeled": ["c2"], "val": ["c3"], "test": []})
    )
    net = _trained_a_little()
    window_cfg = ModelConfig(**{**CFG.as_dict(), "bn_statistics": "window"})
    save_checkpoint(tmp_path / "model.pt", net, None, window_cfg, {"method": "supervised"})
    running = make_validator(processed, ["c3"], PATCH, torch.device("cpu"))(net.eval())

    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--processed", str(processed)]
    argv += ["--split", str(tmp_path / "split.json"), "--patch", "32", "32", "16", "--batches", "3"]
    assert bn_statistics.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["running"] == running
