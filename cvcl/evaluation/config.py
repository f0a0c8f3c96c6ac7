"""The ``evaluate`` section of params.yaml.

Kept apart from the metrics (scipy) because every stage reads this declaration through
:mod:`cvcl.settings` when it checks params.yaml's keys.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.settings import SECTION

DistanceUnit = Literal["voxel", "mm"]


@dataclass(frozen=True, config=SECTION)
class EvaluateConfig:
    """How the test predictions are scored (``evaluate`` in params.yaml)."""

    distance_unit: DistanceUnit = Field(default="voxel", description="the unit of HD95 and ASD")
