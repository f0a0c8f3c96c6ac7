"""Labeled / unlabeled / validation / test splits.

Two strategies:

- ``protocol`` (the papers' tables): the dataset's fixed lists. The first ``labeled`` cases of
  ``train.list`` are labeled and the rest unlabeled; ``test.list`` is the test set; ``val.list``,
  when the dataset ships one, is the validation set, otherwise the last ``val`` training cases.
- ``random``: every case shuffled with ``split.seed``; ``test_fraction`` of them tested, then
  ``val`` validation cases, then ``labeled`` labeled, the rest unlabeled.

The split records how it was made: ``protocol`` (``fixed-lists`` or ``random``), ``lists`` (which
published lists, from the dataset's ``protocol.json``: ``ua-mt``, ``ssl4mis``, ``user``,
``generator``), and, where the dataset's published lists could not be used because cases are
missing, ``fallback`` with the reason: then ``protocol`` falls back to a seeded ``random`` split.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.errors import DataError, ParamError
from cvcl.settings import SECTION
from cvcl.workspace import MANIFEST, read_list, read_manifest, read_protocol

Strategy = Literal["protocol", "random"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


@dataclass(frozen=True, config=SECTION)
class SplitConfig:
    """How the split is made (``split`` in params.yaml); ``labeled`` is a top-level key."""

    strategy: Strategy = Field(default="protocol", description="protocol: the dataset's train/test lists | random")
    val: int = Field(default=0, ge=0, description="validation cases held out of the training list")
    test_fraction: float = Field(
        default=0.2, gt=0.0, le=1.0, description="the share of cases tested (random strategy only)"
    )
    seed: int = Field(default=0, ge=0, description="the shuffle's seed (random strategy only)")


def make_split(
    processed_dir: str | Path,
    *,
    labeled: int,
    strategy: str = SplitConfig.strategy,
    val: int = SplitConfig.val,
    test_fraction: float = SplitConfig.test_fraction,
    seed: int = SplitConfig.seed,
) -> dict:
    """Build the split of the cases in ``processed_dir`` as a JSON-ready dict."""
    processed_dir = Path(processed_dir)
    cases = [row["case_id"] for row in read_manifest(processed_dir)]
    if not cases:
        raise DataError(processed_dir / MANIFEST, "lists no cases")
    record = read_protocol(processed_dir)
    fallback = None
    has_lists = (processed_dir / "train.list").exists() and (processed_dir / "test.list").exists()
    if strategy == "protocol" and not has_lists and record.get("fallback") == "random":
        strategy, fallback = "random", record.get("reason") or "the dataset has no fixed lists"
    if strategy == "protocol":
        train_list, test_list = processed_dir / "train.list", processed_dir / "test.list"
        if not (train_list.exists() and test_list.exists()):
            raise ParamError("split.strategy", strategy, "'random' for a dataset without train.list and test.list")
        train, test = read_list(train_list), read_list(test_list)
        val_list = processed_dir / "val.list"
        if val_list.exists():
            val_cases = read_list(val_list)
        else:
            if val >= len(train):
                raise ParamError(
                    "split.val", val, f"an integer in [0, {len(train) - 1}] (training cases: {len(train)})"
                )
            val_cases = train[len(train) - val :] if val else []
        train = [c for c in train if c not in set(val_cases)]
    elif strategy == "random":
        order = [cases[i] for i in np.random.default_rng(seed).permutation(len(cases))]
        n_test = int(round(test_fraction * len(order)))
        if not 0 < n_test < len(order):
            raise ParamError(
                "split.test_fraction",
                test_fraction,
                f"a fraction leaving at least one test and one training case of {len(order)}",
            )
        if val >= len(order) - n_test:
            raise ParamError("split.val", val, f"fewer than the {len(order) - n_test} non-test cases")
        test, val_cases, train = order[:n_test], order[n_test : n_test + val], order[n_test + val :]
    else:
        raise ParamError("split.strategy", strategy, "one of " + ", ".join(STRATEGIES))

    unknown = sorted(set(train + test + val_cases) - set(cases))
    if unknown:
        raise DataError(processed_dir, f"the case lists name cases that were not preprocessed, e.g. {unknown[0]}")
    if not 1 <= labeled <= len(train):
        raise ParamError("labeled", labeled, f"an integer in [1, {len(train)}] (the training cases)")
    split = {
        "protocol": "fixed-lists" if strategy == "protocol" else "random",
        "lists": record.get("lists") if strategy == "protocol" else None,
        "seed": seed if strategy == "random" else None,
        "labeled": train[:labeled],
        "unlabeled": train[labeled:],
        "val": val_cases,
        "test": test,
    }
    if fallback:
        split["fallback"] = fallback
    return split
