"""The method registry (cvcl/methods): one module per method, and everything that reads it."""

import math
import subprocess
import sys

import pytest
import torch
import yaml

from cvcl import methods
from cvcl.analysis import config_name
from cvcl.errors import ParamError
from cvcl.losses.consistency import teacher_input_noise
from cvcl.methods import SUPERVISED_TERM, LossConfig, Method
from cvcl.models.vnet import VNet
from cvcl.params import Params
from cvcl.settings import SETTINGS
from cvcl.tracking.naming import run_name
from cvcl.training.ema import make_teacher
from cvcl.training.objective import Objective
from tests.conftest import ROOT

SHAPE = (32, 16, 16)
FAST = dict(rampup_length=0.0, n_anchor=8, uamt_passes=2)


def nets():
    torch.manual_seed(0)
    student = VNet(base_filters=2, embed_dim=4)
    return student, make_teacher(student, lambda: VNet(base_filters=2, embed_dim=4))


def batch(n_labeled=2, n_unlabeled=2):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n_labeled + n_unlabeled, 1, *SHAPE, generator=g)
    labels = torch.zeros(n_labeled + n_unlabeled, *SHAPE, dtype=torch.long)
    labels[:n_labeled, 8:20, 4:10, 4:10] = 1
    return images, labels


def test_the_registry_finds_the_four_methods_in_order():
    assert methods.names() == ("supervised", "mean_teacher", "ua_mt", "cvcl")
    assert [methods.get(n).semi_supervised for n in methods.names()] == [False, True, True, True]
    assert all(isinstance(methods.get(n), Method) and methods.get(n).description for n in methods.names())


def test_declarations_are_consistent_with_the_params():
    for name in methods.names():
        method = methods.get(name)
        weights = {t.weight for t in method.terms if t.weight}
        assert weights <= set(SETTINGS), name  # a term's weight is a parameter
        assert {s.param for s in method.switches} <= weights, name  # a switch turns terms off
        assert all(t.name.startswith("loss_") and t.help for t in method.terms), name
        assert method.semi_supervised or not method.terms, name  # unsupervised terms need a teacher


@pytest.mark.parametrize(
    "name,weights",
    [
        ("supervised", {}),
        ("mean_teacher", {}),
        ("mean_teacher", {"mt_weight": 0.0}),
        ("ua_mt", {}),
        ("cvcl", {"pcl_weight": 1.0, "vcl_weight": 1.0}),
        ("cvcl", {"pcl_weight": 1.0, "vcl_weight": 0.0}),
        ("cvcl", {"pcl_weight": 0.0, "vcl_weight": 0.5}),
        ("cvcl", {"pcl_weight": 0.0, "vcl_weight": 0.0}),
        ("cvcl", {"mt_weight": 0.0}),
    ],
)
def test_objective_returns_exactly_the_declared_terms(name, weights):
    cfg = LossConfig(**FAST, **weights)
    method = methods.get(name)
    declared = {t.name for t in method.active_terms(cfg.as_params())}
    student, teacher = nets()
    objective = Objective(name, cfg, 100)
    images, labels = batch(2, 2 if method.semi_supervised else 0)
    total, terms = objective(student, teacher if method.semi_supervised else None, images, labels, 2, step=5)
    schedule = {"consistency_weight"} if method.semi_supervised else set()
    assert set(terms) == {SUPERVISED_TERM.name} | declared | schedule
    assert objective.needs_projection == any(t.projection for t in method.active_terms(cfg.as_params()))
    assert math.isfinite(total.item())


def test_log_columns_are_the_train_logs_header():
    assert methods.log_columns() == [
        "step",
        "loss",
        "loss_sup",
        "loss_mt",
        "loss_uamt",
        "loss_pcl_l2u",
        "loss_pcl_u2l",
        "loss_vcl_l",
        "loss_vcl_u",
        "consistency_weight",
        "lr",
        "grad_norm",
        "amp_scale",
    ]


def test_run_and_config_names_follow_the_switches():
    values = LossConfig(pcl_weight=1.0, vcl_weight=0.05).as_params()
    assert run_name("cvcl", 8, 1, values) == "cvcl-l8-pcl1-vcl0.05-s1"
    assert run_name("supervised", 8, 3, values) == "supervised-l8-s3"
    assert run_name("mean_teacher", 16, 2, values) == "mean_teacher-l16-s2"
    assert config_name("cvcl", {"loss.pcl_weight": 1.0, "loss.vcl_weight": 0.0}) == "cvcl (pcl 1, vcl 0) = PCL only"
    assert config_name("cvcl", {"loss.pcl_weight": 0, "loss.vcl_weight": 0}) == "cvcl (pcl 0, vcl 0) = mean teacher"
    assert (
        config_name("cvcl", {"loss.mt_weight": 1, "loss.pcl_weight": 0, "loss.vcl_weight": 1})
        == "cvcl (pcl 0, vcl 1) = VCL only"
    )
    assert config_name("cvcl", {"loss.pcl_weight": 1, "loss.vcl_weight": 1}) == "cvcl (pcl 1, vcl 1)"
    # the released training script's terms: the mean teacher's switch is spelt once it is off
    released = {"loss.mt_weight": 0.0, "loss.pcl_weight": 0.0, "loss.vcl_weight": 0.6}
    assert config_name("cvcl", released) == "cvcl (mt 0, pcl 0, vcl 0.6) = released code: supervised + VCL"
    assert run_name("cvcl", 4, 2, released) == "cvcl-l4-mt0-pcl0-vcl0.6-s2"
    assert (
        config_name("cvcl", {"loss.mt_weight": 0.5, "loss.pcl_weight": 1, "loss.vcl_weight": 1})
        == "cvcl (mt 0.5, pcl 1, vcl 1)"
    )
    assert config_name("ua_mt", {"loss.pcl_weight": 1.0, "loss.vcl_weight": 1.0}) == "ua_mt"
    assert config_name("retired_method", {}) == "retired_method"  # runs of a method since removed


def test_an_unknown_method_names_the_valid_ones():
    with pytest.raises(
        ParamError,
        match=r"method = 'cvlc': expected one of supervised, mean_teacher, ua_mt, "
        r"cvcl; did you mean cvcl\?",
    ):
        methods.get("cvlc")
    with pytest.raises(ParamError, match="method"):
        Objective("fixmatch", LossConfig(), 100)
    with pytest.raises(ParamError, match="one of supervised, mean_teacher, ua_mt, cvcl"):
        Params({"method": "fixmatch"}).get("method")


def test_the_declarations_import_without_torch():
    code = (
        "import sys, cvcl.methods as m, cvcl.settings as s; m.names(); m.log_columns(); "
        "s.SETTINGS['method'].allowed(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_every_term_is_in_its_declared_plot_of_dvc_yaml():
    plots = {}
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        ((plot_id, spec),) = entry.items()
        columns = (spec.get("y") or {}).get("models/train_log.csv", [])
        plots[plot_id] = [columns] if isinstance(columns, str) else list(columns)
    for term in methods.all_terms():
        holding = [plot_id for plot_id, columns in plots.items() if term.name in columns]
        assert holding == [term.plot], f"{term.name}: in plots {holding}, declared in {term.plot!r}"
    declared = {t.plot for n in methods.names() for t in methods.get(n).terms} | {SUPERVISED_TERM.plot}
    assert declared <= set(plots)


def test_teacher_input_noise_is_one_clamped_draw_or_none():
    images = torch.zeros(2, 1, 4, 4, 4)
    state = torch.get_rng_state()
    assert teacher_input_noise(images, 0.0) is images
    assert torch.equal(torch.get_rng_state(), state)  # no draw without noise
    torch.manual_seed(5)
    noisy = teacher_input_noise(images, 0.1)
    torch.manual_seed(5)
    expected = torch.clamp(torch.randn_like(images) * 0.1, -0.2, 0.2)
    assert torch.equal(noisy, expected) and noisy.abs().max() <= 0.2


TOY = '''
"""A toy method: entropy minimisation on the unlabeled volumes."""
from cvcl.methods import Batch, Method, Term

ENTROPY = Term("loss_toy_entropy", "mean entropy of the student's softmax", "consistency_terms")


class Toy(Method):
    def add_terms(self, batch: Batch) -> None:
        import torch

        p = torch.softmax(batch.logits[batch.n_labeled:], 1)
        entropy = -(p * torch.log(p + 1e-8)).sum(1).mean()
        batch.add(batch.w * entropy, {ENTROPY: entropy})


METHOD = Toy(name="toy_entropy", description="entropy minimisation", order=9, terms=(ENTROPY,))
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """A method module dropped next to the others (in a folder the package also searches)."""
    (tmp_path / "toy_entropy.py").write_text(TOY)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    methods._registry.cache_clear()
    yield "toy_entropy"
    methods._registry.cache_clear()
    sys.modules.pop("cvcl.methods.toy_entropy", None)
    if hasattr(methods, "toy_entropy"):
        delattr(methods, "toy_entropy")


def test_adding_a_method_is_one_module(toy_method):
    assert methods.names() == ("supervised", "mean_teacher", "ua_mt", "cvcl", toy_method)
    assert Params({"method": toy_method}).get("method") == toy_method
    assert methods.log_columns()[-5:] == ["loss_toy_entropy", "consistency_weight", "lr", "grad_norm", "amp_scale"]
    assert run_name(toy_method, 4, 1, LossConfig().as_params()) == "toy_entropy-l4-s1"
    student, teacher = nets()
    images, labels = batch()
    objective = Objective(toy_method, LossConfig(**FAST), 100)
    assert objective.needs_teacher and not objective.needs_projection
    total, terms = objective(student, teacher, images, labels, 2, step=5)
    assert set(terms) == {"loss_sup", "loss_toy_entropy", "consistency_weight"}
    total.backward()
    assert student.enc[0][0].weight.grad.abs().sum() > 0
    assert total.item() == pytest.approx(
        (terms["loss_sup"] + terms["consistency_weight"] * terms["loss_toy_entropy"]).item()
    )
