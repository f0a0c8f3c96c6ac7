"""results/batch_coupling.py: a batch of one crop is normalised as ``model.bn_statistics: window``
normalises it at inference, the running statistics stay as they were, and the script prints a
Dice for each case group and batch size."""

import importlib.util
import json

import numpy as np
import torch

from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import ModelConfig
from cvcl.models.vnet import set_bn_statistics
from tests.conftest import ROOT
from tests.helpers import bn_vnet_trained_a_little, write_box_cases

spec = importlib.util.spec_from_file_location("batch_coupling", ROOT / "results" / "batch_coupling.py")
batch_coupling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(batch_coupling)

CFG = ModelConfig(in_channels=1, n_classes=2, base_filters=2, embed_dim=8, norm="batch", dropout=0.0)
PATCH = (32, 32, 16)


def _net() -> torch.nn.Module:
    return bn_vnet_trained_a_little(CFG, PATCH)


def test_a_batch_of_one_is_normalised_as_window_statistics_do_and_running_statistics_stay():
    x = torch.randn(1, 1, *PATCH) * 3 + 2
    window = _net().eval()
    set_bn_statistics(window, "window")
    with torch.no_grad():
        expected = window(x).logits
    coupled = _net()
    batch_coupling.batch_normalised(coupled)
    first = next(m for m in coupled.modules() if isinstance(m, torch.nn.BatchNorm3d))
    before = first.running_mean.clone()
    with torch.no_grad():
        got = coupled(x).logits
        coupled(torch.randn(4, 1, *PATCH))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(first.running_mean, before)
    # with other crops in the batch the same crop is normalised differently
    with torch.no_grad():
        mixed = coupled(torch.cat([x, torch.randn(3, 1, *PATCH)])).logits[:1]
    assert not torch.allclose(mixed, expected, atol=1e-3)


def test_the_crops_hold_foreground_and_the_script_prints_each_group_and_size(tmp_path, capsys):
    processed = write_box_cases(tmp_path / "processed", shape=(48, 48, 24), n=4)
    volume = (np.zeros((1, 48, 48, 24), np.float32), np.zeros((48, 48, 24), np.uint8))
    volume[1][40:, 40:, 20:] = 1
    image, label = batch_coupling.foreground_crop(volume, PATCH, np.random.default_rng(0))
    assert image.shape == (1, *PATCH) and label.shape == PATCH and label.any()

    split = {"labeled": ["c0", "c1"], "unlabeled": [], "val": ["c2", "c3"], "test": []}
    (tmp_path / "split.json").write_text(json.dumps(split))
    save_checkpoint(tmp_path / "model.pt", _net(), None, CFG, {"method": "supervised"})
    argv = ["--checkpoint", str(tmp_path / "model.pt"), "--processed", str(processed), "--split"]
    argv += [str(tmp_path / "split.json"), "--patch", "32", "32", "16", "--sizes", "1", "2", "--draws", "2"]
    assert batch_coupling.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["norm"] == "batch"
    assert set(printed) >= {"labeled_k1", "labeled_k2", "val_k1", "val_k2"}
    assert all(0.0 <= printed[k] <= 100.0 for k in ("labeled_k1", "labeled_k2", "val_k1", "val_k2"))
