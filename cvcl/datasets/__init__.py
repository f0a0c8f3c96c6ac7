"""The registry of datasets: one folder per dataset in this package, each exposing ``DATASET``.

A dataset's folder holds everything that is its own:

- ``__init__.py``: its declaration, a :class:`~cvcl.datasets.spec.Dataset` (what it is, its
  labels, the published lists it follows, how its source and converter are reached);
- ``source.py``: how its raw form is made: generated, downloaded, or, for a local copy, which
  files of the user's copy make it (``layout``);
- ``convert.py``: its converter from the raw form to processed cases (``iter_cases``), where it
  has one of its own (``synthetic-la`` uses ``nifti``'s, ``synthetic-brats`` ``brats2019``'s).

What several datasets share stays in one place each: transfers, archives, file layouts, local
copies and the shipped case lists in :mod:`cvcl.sources`; crops, normalisation, checks and the
recipe in :mod:`cvcl.preprocessing`. The types a declaration is made of are in
:mod:`cvcl.datasets.spec`, and the pieces that import its code on first use in
:mod:`cvcl.datasets.lazy`.

This module is the top: the stages (and the sweep) ask it once for the :class:`Dataset` named
by ``dataset`` in params.yaml and hand that object down; nothing below imports it. It finds the
folders of this package itself, so adding a dataset is adding one folder; ``dataset``'s choices in
:mod:`cvcl.settings` are :func:`names`. Finding them imports only the declarations, which load
neither torch nor nilearn nor the shared machinery (:mod:`cvcl.datasets.lazy`).
"""

from __future__ import annotations

import functools

from cvcl.datasets.spec import Dataset
from cvcl.registry import discover_members, member


@functools.cache
def _registry() -> dict[str, Dataset]:
    """Every dataset folder of this package (but ``_private`` ones), by dataset name, in ``order``."""
    return discover_members(__name__, __path__, "DATASET", Dataset, packages=True)


def names() -> tuple[str, ...]:
    """The valid values of ``dataset``, in the docs' order (synthetic ones first)."""
    return tuple(_registry())


def get(name: str) -> Dataset:
    """The dataset called ``name``; an unknown name is a :class:`ParamError` on ``dataset``
    suggesting the closest valid name."""
    return member(_registry(), "dataset", name)
