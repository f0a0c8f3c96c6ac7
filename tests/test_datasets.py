"""The dataset registry: one module per dataset, found by the package itself, and the one place
the download, preprocess and sweep code and the settings ask about a dataset."""

import subprocess
import sys
import textwrap

import pytest
import yaml

from cvcl import datasets
from cvcl.commands import sweep
from cvcl.errors import ParamError
from cvcl.params import Params
from cvcl.settings import SETTINGS
from cvcl.sources import protocol
from cvcl.sources.config import SourceSettings, source_settings
from tests.conftest import ROOT

ORDER = ("synthetic-la", "synthetic-brats", "la", "la-nrrd", "brats2019", "nifti")


@pytest.fixture
def fresh_registry():
    """A registry discovered again on first use, and again after the test (without the
    modules the test added)."""
    before = set(sys.modules)
    datasets._registry.cache_clear()
    yield
    datasets._registry.cache_clear()
    for name in set(sys.modules) - before:
        if name.startswith("cvcl.datasets."):
            del sys.modules[name]


def test_the_registry_finds_the_six_datasets_in_order_each_complete():
    assert datasets.names() == ORDER
    assert SETTINGS["dataset"].allowed() == ORDER  # params.yaml's choices are the registry
    for name in ORDER:
        dataset = datasets.get(name)
        assert dataset.name == name and dataset.description and "\n" not in dataset.description
        assert callable(dataset.writer) and callable(dataset.iter_cases) and callable(dataset.training_cases)
        assert dataset.labels == (0, 1), name  # every converter writes binary labels
    local = {n for n in ORDER if datasets.get(n).layout is not None}
    assert local == {"la-nrrd", "brats2019", "nifti"}


def test_published_lists_come_from_the_registry():
    assert datasets.get("la-nrrd").published == datasets.get("la").published
    assert protocol.shipped(datasets.get("la-nrrd").published).name == "ua-mt"
    assert protocol.shipped(datasets.get("brats2019").published).name == "ssl4mis"
    assert [n for n in ORDER if datasets.get(n).published is None] == ["synthetic-la", "synthetic-brats", "nifti"]


@pytest.mark.parametrize(
    "typo,suggestion", [("synthetic_la", "synthetic-la"), ("brats", "brats2019"), ("la_nrrd", "la-nrrd")]
)
def test_a_misspelt_name_fails_in_one_line_naming_the_closest(typo, suggestion):
    with pytest.raises(ParamError) as info:
        datasets.get(typo)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"params.yaml: dataset = {typo!r}: expected one of synthetic-la, ")
    assert message.endswith(f"; did you mean {suggestion}?")


def test_a_name_like_none_gets_no_suggestion():
    with pytest.raises(ParamError, match=r"expected one of synthetic-la, .*, nifti$"):
        datasets.get("prostate")


def test_training_cases_before_preprocessing():
    params = Params({"download": {"synthetic": {"n_train": 40}, "synthetic_brats": {"n_train": 12}}})
    counts = {
        name: datasets.get(name).training_cases(source_settings(params, datasets.get(name).settings)) for name in ORDER
    }
    # synthetic-brats reads its own section, not download.synthetic (once a real bug)
    assert counts == {
        "synthetic-la": 40,
        "synthetic-brats": 12,
        "la": 80,
        "la-nrrd": 80,
        "brats2019": 250,
        "nifti": None,
    }


def test_a_dataset_declares_its_own_section_where_the_settings_table_finds_it():
    import importlib

    from cvcl.settings import SECTIONS

    table = dict(SECTIONS)
    owners = {}
    for name in ORDER:
        own = datasets.get(name).settings
        if own:
            module, cls = table[own[0]].split(":")
            assert getattr(importlib.import_module(module), cls) is own[1], name
            owners[name] = own[0]
    assert owners == {"synthetic-la": "download.synthetic", "synthetic-brats": "download.synthetic_brats"}


@pytest.mark.parametrize("dataset,n", [("la", 80), ("brats2019", 250), ("synthetic-brats", 12)])
def test_the_sweep_counts_through_the_registry_before_preprocessing(tmp_path, dataset, n):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["dataset"] = dataset
    params["download"]["synthetic_brats"]["n_train"] = 12
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert sweep.training_cases(tmp_path) == n


TOY = '''
"""``toy``: a dataset added as one folder."""

from cvcl.datasets.spec import Dataset


def writer(dataset, settings, progress, fetcher):
    return lambda out: {"dataset": "toy"}


def iter_cases(raw_dir, source, config):
    return iter(())


DATASET = Dataset(name="toy", description="a toy", order=99, labels=(0, 1, 2), writer=writer,
                  iter_cases=iter_cases, training_cases=lambda settings: 7)
'''


def test_adding_a_dataset_is_adding_one_folder(tmp_path, monkeypatch, fresh_registry):
    # a second folder of the package, as if toy/ had been dropped into cvcl/datasets/
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text(textwrap.dedent(TOY))
    # a plain module beside the folders is the registry's own (as spec.py and lazy.py), not a dataset
    (tmp_path / "helpers.py").write_text("NAME = 'helpers'\n")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(tmp_path)])
    assert datasets.names() == (*ORDER, "toy")
    toy = datasets.get("toy")
    assert toy.labels == (0, 1, 2) and toy.training_cases(SourceSettings()) == 7
    assert "toy" in SETTINGS["dataset"].allowed()
    assert Params({"dataset": "toy"}).get("dataset") == "toy"


def test_a_folder_without_a_dataset_is_refused(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "__init__.py").write_text("NAME = 'broken'\n")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(tmp_path)])
    with pytest.raises(TypeError, match="cvcl.datasets.broken: a dataset module must define DATASET"):
        datasets.names()


def test_resolving_the_choices_stays_light():
    code = (
        "import sys, cvcl.settings; cvcl.settings.SETTINGS['dataset'].allowed(); "
        "print(' '.join(m for m in ('torch', 'nilearn', 'h5py', 'nibabel', 'cvcl.sources', 'cvcl.preprocessing') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
