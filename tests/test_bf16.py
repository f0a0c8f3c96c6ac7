"""``train.precision: bf16``: bfloat16 autocast and channels_last_3d on the CPU (the opt-in fast
path of issue 29), the prototype terms still in float32, float32 untouched by default."""

import pytest
import torch

from cvcl.device import amp_dtype, memory_format
from cvcl.losses.prototype import class_prototypes
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.models.vnet import Conv3d
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.step import TrainStep

CPU = torch.device("cpu")


def test_the_cpu_path_switches_only_with_bf16():
    assert amp_dtype(CPU, True) is None and memory_format(CPU, True) == torch.contiguous_format
    assert amp_dtype(CPU, True, "bf16") is torch.bfloat16
    assert memory_format(CPU, True, "bf16") == torch.channels_last_3d
    assert memory_format(CPU, False, "bf16") == torch.contiguous_format  # train.channels_last still decides
    assert amp_dtype(torch.device("cuda"), True) is torch.float16  # the CUDA default is unchanged


def _step(method: str, precision: str) -> tuple[TrainStep, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    cfg = TrainConfig(iterations=10, patch=(32, 32, 32), batch_size=4, labeled_bs=2, precision=precision)
    losses = LossConfig(rampup_length=0.0, n_anchor=16, vcl_weight=0.6)
    step = TrainStep(Objective(method, losses, cfg.iterations), ModelConfig(base_filters=4, embed_dim=16), cfg, CPU)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 1, 32, 32, 32, generator=g)
    labels = torch.zeros(4, 32, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24, 10:22] = 1
    return step, images, labels


@pytest.mark.parametrize("method", ["supervised", "mean_teacher", "cvcl"])
def test_a_bf16_step_computes_in_bfloat16_and_follows_float32(method):
    bf16, images, labels = _step(method, "bf16")
    ref, _, _ = _step(method, "float32")
    seen: list[torch.dtype] = []
    conv = next(m for m in bf16.student.modules() if isinstance(m, torch.nn.Conv3d))
    hook = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    torch.manual_seed(5)  # the same dropout masks and anchors for both
    got = bf16(images, labels, 0)
    hook.remove()
    torch.manual_seed(5)
    want = ref(images, labels, 0)
    assert seen and seen[0] == torch.bfloat16  # the convolutions ran in bfloat16
    assert conv.weight.dtype == torch.float32  # the weights the optimiser steps stay float32
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for name in want:
        if name.startswith("loss"):
            assert torch.isfinite(got[name]), name
            assert float(got[name]) == pytest.approx(float(want[name]), rel=0.05, abs=0.02), name
    for t in range(1, 4):
        out = bf16(images, labels, t)
        bad = [k for k, v in out.items() if (k.startswith("loss") or k == "grad_norm") and not torch.isfinite(v)]
        assert not bad, f"step {t}: {bad}"


def test_a_conv_on_a_map_smaller_than_its_kernel_has_one_finite_gradient_under_bf16():
    """The deepest V-Net stage of a 32-voxel patch is 2 voxels deep: there oneDNN's bfloat16
    weight gradient differs from call to call and is at times inf (13 distinct results in 60
    calls of plain ``nn.Conv3d`` on this machine); the V-Net's conv computes such maps in float32."""
    torch.manual_seed(0)
    conv = Conv3d(64, 64, 3, padding=1).to(memory_format=torch.channels_last_3d)
    x = torch.randn(4, 64, 2, 2, 2).contiguous(memory_format=torch.channels_last_3d)
    g = torch.randn(4, 64, 2, 2, 2)
    grads = []
    for _ in range(30):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.backward(g)
        grads.append(conv.weight.grad.clone())
    conv.zero_grad()
    conv(x).backward(g)
    assert y.dtype == torch.float32
    assert all(torch.isfinite(w).all() for w in grads)
    assert all(torch.equal(w, grads[0]) for w in grads)
    torch.testing.assert_close(grads[0], conv.weight.grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # maps the kernel fits still run in bfloat16
        assert conv(torch.randn(1, 64, 4, 4, 4)).dtype == torch.bfloat16


def test_prototypes_under_bf16_autocast_are_float32():
    g = torch.Generator().manual_seed(0)
    feat = torch.relu(torch.randn(2, 8, 32, 32, 16, generator=g))
    labels = torch.zeros(2, 32, 32, 16, dtype=torch.long)
    labels[:, 8:20, 8:20, 4:12] = 1
    conf = torch.softmax(torch.randn(2, 2, 32, 32, 16, generator=g), 1)
    ref, _ = class_prototypes(feat, labels, conf)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = class_prototypes(feat.bfloat16(), labels, conf.bfloat16())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)  # only the inputs' rounding differs
