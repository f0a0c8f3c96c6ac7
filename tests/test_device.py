"""The CUDA-only speed-ups have CPU equivalents that give the same numbers."""

import pytest
import torch

from cvcl.device import amp_dtype, autocast, memory_format, select_device
from cvcl.errors import ParamError
from cvcl.inference.sliding_window import sliding_window_probs
from cvcl.models.vnet import VNet


def test_cpu_gets_plain_float32_and_contiguous_tensors():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, True) is None
    assert memory_format(cpu, True) == torch.contiguous_format
    assert select_device("auto").type in ("cpu", "cuda")


def test_cuda_settings_are_chosen_for_cuda():
    cuda = torch.device("cuda")
    assert amp_dtype(cuda, True) == torch.float16 and amp_dtype(cuda, False) is None
    assert memory_format(cuda, True) == torch.channels_last_3d


def test_unavailable_device_is_a_param_error():
    if torch.cuda.is_available():
        return
    try:
        select_device("cuda")
    except ParamError as exc:
        assert "train.device" in str(exc)
    else:
        raise AssertionError("expected a ParamError")


def test_channels_last_gives_the_same_output_as_contiguous():
    torch.manual_seed(0)
    net = VNet(base_filters=4, embed_dim=0).eval()
    x = torch.randn(2, 1, 32, 32, 16)
    ref = net(x).logits
    net_cl = net.to(memory_format=torch.channels_last_3d)
    out = net_cl(x.contiguous(memory_format=torch.channels_last_3d)).logits
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_autocast_path_runs_and_stays_close_to_float32():
    """The AMP code path (autocast + float32 accumulation), exercised with CPU bfloat16."""
    torch.manual_seed(0)
    net = VNet(base_filters=4, embed_dim=0).eval()
    image = torch.randn(1, 32, 32, 16)
    ref = sliding_window_probs(net, image, (32, 32, 16), (16, 16, 16))
    low = sliding_window_probs(net, image, (32, 32, 16), (16, 16, 16), amp=torch.bfloat16)
    assert low.dtype == torch.float32
    assert (low.argmax(0) == ref.argmax(0)).float().mean() > 0.95
    with autocast(torch.device("cpu"), None):
        assert not torch.is_autocast_enabled("cpu")


def test_a_bad_device_error_names_the_parameter_it_came_from():
    with pytest.raises(ParamError, match=r"infer\.device = 'tpu'"):
        select_device("tpu", "infer.device")
    with pytest.raises(ParamError, match=r"train\.device = 'tpu'"):
        select_device("tpu")
