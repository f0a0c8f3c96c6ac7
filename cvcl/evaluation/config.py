"""The ``evaluate`` section of params.yaml.

Kept apart from the metrics (scipy) because every stage reads this declaration through
:mod:`cvcl.settings` when it checks params.yaml's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvcl.settings import setting


@dataclass(frozen=True)
class EvaluateConfig:
    """How the test predictions are scored (``evaluate`` in params.yaml)."""

    distance_unit: str = setting("voxel", "the unit of HD95 and ASD", choices="cvcl.evaluation.summary:DISTANCE_UNITS")
