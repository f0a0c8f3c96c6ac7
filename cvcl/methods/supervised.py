"""The supervised baseline: the V-Net trained on the labeled volumes alone, without a teacher."""

from __future__ import annotations

from cvcl.methods import Method

# no terms of its own: the generic objective's supervised loss is all it trains with
METHOD = Method(
    name="supervised", description="V-Net on the labeled volumes only (lower bound)", order=0, semi_supervised=False
)
