import pytest
import torch

from cvcl.models.checkpoint import load_model, save_checkpoint
from cvcl.models.config import ModelConfig, build_model
from cvcl.models.vnet import VNet


def test_outputs_and_feature_taps_have_documented_shapes():
    net = VNet(in_channels=2, n_classes=2, base_filters=4, embed_dim=8).eval()
    out = net(torch.randn(3, 2, 32, 32, 16))
    assert out.logits.shape == (3, 2, 32, 32, 16)
    assert out.d9.shape == (3, 4, 32, 32, 16)
    assert out.center.shape == (3, 8, 16, 16, 8)
    emb = net.project(out.d9)
    assert emb.shape == (3, 8, 32, 32, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3, 32, 32, 16))


def test_stage_depths_follow_the_paper():
    net = VNet(base_filters=2)

    def convs(stage):
        return sum(isinstance(m, torch.nn.Conv3d) for m in stage.modules())

    assert [convs(s) for s in net.enc] == [1, 2, 3, 3, 3]
    assert [convs(s) for s in net.dec] == [3, 3, 2, 1]


def test_projection_head_is_a_registered_trained_module():
    net = VNet(base_filters=2, embed_dim=4)
    names = {n for n, _ in net.named_parameters()}
    assert any(n.startswith("projection.") for n in names)  # in state_dict, optimiser and EMA
    without = VNet(base_filters=2, embed_dim=0)
    with pytest.raises(RuntimeError):
        without.project(torch.zeros(1, 2, 2, 2, 2))


def test_checkpoint_round_trip_gives_the_same_predictions(tmp_path):
    cfg = ModelConfig(base_filters=4, embed_dim=8)
    student = build_model(cfg).eval()
    teacher = build_model(cfg).eval()
    save_checkpoint(tmp_path / "m.pt", student, teacher, cfg, {"method": "cvcl"})
    x = torch.randn(1, 1, 32, 32, 16)
    loaded, meta = load_model(tmp_path / "m.pt", "student")
    torch.testing.assert_close(loaded(x).logits, student(x).logits)
    loaded_t, _ = load_model(tmp_path / "m.pt", "teacher")
    torch.testing.assert_close(loaded_t(x).logits, teacher(x).logits)
    assert meta["method"] == "cvcl" and loaded.projection is None


def test_the_projection_head_has_a_declared_hidden_width():
    wide = VNet(base_filters=8, embed_dim=64, embed_hidden=64).projection.net
    assert (wide[0].in_channels, wide[0].out_channels, wide[2].in_channels, wide[2].out_channels) == (8, 64, 64, 64)
    assert VNet(base_filters=8, embed_dim=64).projection.net[0].out_channels == 8  # the old head when not given
    assert build_model(ModelConfig(base_filters=4, embed_dim=16)).projection.net[0].out_channels == 64  # declared
    assert build_model(ModelConfig(base_filters=4, embed_dim=16, embed_hidden=12)).projection.net[2].in_channels == 12


def _bn_pair(bn_statistics):
    """A batch-norm V-Net in eval mode whose running statistics moved away from their start."""
    torch.manual_seed(0)
    net = VNet(base_filters=2, embed_dim=0, norm="batch", dropout=0.0, bn_statistics=bn_statistics).train()
    with torch.no_grad():
        net(torch.randn(2, 1, 32, 32, 16) * 3 + 2)
    return net.eval()


def test_batch_norm_running_is_torchs_batch_norm():
    from cvcl.models.vnet import BatchNorm

    net = _bn_pair("running")
    layer = next(m for m in net.modules() if isinstance(m, BatchNorm))
    plain = torch.nn.BatchNorm3d(layer.num_features).eval()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, layer.num_features, 8, 8, 4)
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)  # eval: the running averages
    layer.train(), plain.train()
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)  # train: batch statistics


def test_window_statistics_normalise_each_window_alone_and_leave_the_running_averages():
    net = _bn_pair("window")
    running = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    x = torch.randn(2, 1, 32, 32, 16) * 3 + 2
    with torch.no_grad():
        together = net(x).logits
        alone = torch.cat([net(x[:1]).logits, net(x[1:]).logits])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)  # no window depends on its neighbour
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in running.items())
    with torch.no_grad():
        assert not torch.allclose(together, _bn_pair("running")(x).logits)  # not the running averages


def test_bn_statistics_is_a_model_param_kept_in_checkpoints(tmp_path):
    from cvcl.models.vnet import BatchNorm
    from cvcl.params import Params

    cfg = Params({"model": {"norm": "batch", "bn_statistics": "window", "base_filters": 2}}).config(
        ModelConfig, "model", in_channels=1, n_classes=2
    )
    net = build_model(cfg, with_projection=False)
    assert all(m.window_statistics for m in net.modules() if isinstance(m, BatchNorm))
    save_checkpoint(tmp_path / "m.pt", net, None, cfg, {"method": "supervised"})
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta["model_config"]["bn_statistics"] == "window"
    assert all(m.window_statistics for m in loaded.modules() if isinstance(m, BatchNorm))
    old = {k: v for k, v in cfg.as_dict().items() if k != "bn_statistics"}  # a checkpoint from before
    assert ModelConfig(**old).bn_statistics == "running"
