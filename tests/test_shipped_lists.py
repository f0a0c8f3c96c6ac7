"""The manifest and published case lists shipped in cvcl/sources/data."""

import re

import pytest

from cvcl.datasets.brats2019 import SSL4MIS
from cvcl.datasets.la import UA_MT
from cvcl.datasets.la import source as la
from cvcl.sources import protocol
from tests.conftest import LA_SAMPLE, SHARED_DATASETS


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason="the shared datasets are not available")
def test_la_manifest_is_the_shared_one():
    assert la.MANIFEST.read_bytes() == (SHARED_DATASETS / "la_manifest.csv").read_bytes()


def test_la_lists_are_the_manifest_in_order():
    manifest = la.read_manifest()
    lists = protocol.shipped(UA_MT)
    assert lists.lists["train"] == [c for c, f in manifest.items() if f.split == "train"]
    assert lists.lists["test"] == [c for c, f in manifest.items() if f.split == "test"]
    assert (len(lists.lists["train"]), len(lists.lists["test"])) == (80, 20)
    assert all(len(f.sha256) == 64 and f.bytes > 0 for f in manifest.values())


@pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available")
def test_the_sample_lists_are_prefixes_of_the_published_ones():
    lists = protocol.shipped(UA_MT).lists
    assert (LA_SAMPLE / "train.list").read_text().split() == lists["train"][:8]
    assert (LA_SAMPLE / "test.list").read_text().split() == lists["test"][:4]


def test_ssl4mis_brats_lists():
    lists = protocol.shipped(SSL4MIS)
    counts = {k: len(v) for k, v in lists.lists.items()}
    assert counts == {"train": 250, "val": 25, "test": 60}
    cases = lists.cases()
    assert len(set(cases)) == 335
    assert all(re.fullmatch(r"BraTS19_(CBICA_[A-Z]{3}|TCIA\d\d_\d{3}|TMC_\d{5}|2013_\d+)_1", c) for c in cases)
