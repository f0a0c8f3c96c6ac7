"""The training methods, one module each, found by this package itself.

A method module in this folder (``supervised.py``, ``mean_teacher.py``, ``ua_mt.py``,
``cvcl.py``) exposes ``METHOD``, a :class:`Method` named after the module, that declares:

- what the method is (``name``, a one-line ``description``, whether it is ``semi_supervised``,
  i.e. needs a teacher and unlabeled cases);
- its loss terms (:class:`Term`: the name they are logged under, a one-line help, the plot of
  ``dvc.yaml`` that draws them and the weight whose 0 removes them);
- the ``switches`` that tell its configurations apart in run names and result tables
  (cvcl: ``loss.pcl_weight``, ``loss.vcl_weight``);
- the computation of its unsupervised terms (:meth:`Method.add_terms`), from a :class:`Batch`
  and the loss settings (:class:`LossConfig`) defined here with them.

Everything else reads the declarations: the generic objective
(:class:`cvcl.training.objective.Objective`), the train log's columns (:func:`log_columns`),
run names (:mod:`cvcl.tracking.naming`), result tables (:mod:`cvcl.analysis`), the ``method``
parameter's choices (:mod:`cvcl.settings`). Adding a method is adding one module here.

The declarations import without torch (``cvcl.settings`` validates ``method`` through
:func:`names` and must stay light): a method module imports torch inside
:meth:`Method.add_terms` only, and modules whose name starts with ``_`` are not methods.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as section

from cvcl.registry import discover_members, member
from cvcl.settings import SECTION

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from cvcl.models.vnet import VNetOutput


# a configuration as dotted parameter names -> values (LossConfig.as_params, a run's params)
ParamValues = Mapping[str, float | int | str]


@dataclass(frozen=True)
class Term:
    """One loss term as the train log, MLflow and ``dvc plots`` show it.

    ``weight`` is the dotted parameter that scales the term (``loss.pcl_weight``); when it is
    0 the term is neither computed nor logged. ``None``: always on for its method.
    ``projection``: the term needs the student's projection head.
    """

    name: str
    help: str
    plot: str
    weight: str | None = None
    projection: bool = False

    def on(self, values: ParamValues) -> bool:
        """Whether the term is computed under ``values`` (dotted parameter names -> values)."""
        return self.weight is None or float(values[self.weight]) > 0


@dataclass(frozen=True)
class Switch:
    """A parameter that names a method's configurations: ``label`` in run names and tables
    (``pcl`` in ``cvcl-l8-pcl1-vcl0-s1``), ``param`` its dotted name (``loss.pcl_weight``).

    ``quiet``: a value at which the switch is left out of names (the usual setting of a switch
    that is rarely turned), and the value of runs logged before the parameter existed."""

    label: str
    param: str
    quiet: float | None = None

    @property
    def column(self) -> str:
        """The analysis tables' column of this switch (``pcl_weight``)."""
        return self.param.rsplit(".", 1)[-1]

    def named(self, value: float) -> bool:
        """Whether names show this switch at ``value``."""
        return self.quiet is None or value != self.quiet


@dataclass(frozen=True)
class Alias:
    """A configuration of a method known by a name of its own in tables: ``name`` when exactly
    the switches labelled in ``on`` are non-zero (cvcl with only ``mt`` on: ``mean teacher``)."""

    name: str
    on: frozenset[str]

    def matches(self, switched: list[tuple[Switch, float]]) -> bool:
        return {s.label for s, v in switched if v != 0} == self.on


# computed by the generic objective for every method; logged before the methods' own terms
SUPERVISED_TERM = Term("loss_sup", "cross-entropy + Dice of the labeled volumes", "training_loss")
# the train log's columns that are not loss terms, around them
_LEADING, _TRAILING = ("step", "loss"), ("consistency_weight", "lr", "grad_norm", "amp_scale")


FeatureTap = Literal["center", "d9"]  # loss.prototype_feature: the V-Net output the prototypes pool


@section(frozen=True, config=SECTION)
class LossConfig:
    """Weights and settings of the loss terms (``loss`` in params.yaml): what a method's terms
    read from :attr:`Batch.cfg`, and what the generic objective ramps and scales them with."""

    consistency: float = Field(default=0.1, ge=0.0, description="maximum of the consistency ramp w(t)")
    rampup_epochs: float = Field(
        default=40, ge=0.0, description="R: steps of the ramp's staircase (the reference's epochs)"
    )
    rampup_length: float = Field(default=1.0, ge=0.0, le=1.0, description="share of train.iterations the ramp spans")
    rampup_start: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of train.iterations with w(t) = 0 before the ramp begins"
    )
    mt_weight: float = Field(default=1.0, ge=0.0, description="mean-teacher softmax MSE")
    pcl_weight: float = Field(default=1.0, ge=0.0, description="class-level prototype consistency")
    vcl_weight: float = Field(
        default=1.0, ge=0.0, description="voxel-level contrast, in the reference's units: x InfoNCE / 20"
    )
    teacher_noise: float = Field(default=0.1, ge=0.0, description="std of the noise added to the teacher's input")
    student_noise: float = Field(
        default=0.0, ge=0.0, description="std of the noise added to the student's unlabeled input (0: none)"
    )
    temperature: float = Field(default=0.1, gt=0.0, description="VCL InfoNCE temperature")
    n_anchor: int = Field(default=100, ge=2, description="VCL anchors per image and class")
    proto_scale: float = Field(default=20.0, gt=0.0, description="s in softmax(s * cos(z, p))")
    prototype_feature: FeatureTap = Field(default="center", description="the decoder tap prototypes pool: center | d9")
    uamt_passes: int = Field(default=8, ge=1, description="UA-MT: noisy teacher passes")

    def as_params(self) -> dict[str, float | int | str]:
        """The settings under their params.yaml names: ``{"loss.pcl_weight": 1.0, ...}`` (what
        the methods' declarations and :func:`cvcl.tracking.naming.run_name` read)."""
        return {f"loss.{f.name}": getattr(self, f.name) for f in fields(self)}


@dataclass
class Batch:
    """What a method's terms see of one training batch; :class:`cvcl.training.objective.Objective`
    builds it.

    Shapes: ``B`` volumes of which the first ``n_labeled`` are labeled, ``K`` classes,
    ``(X, Y, Z)`` the patch. ``total`` and ``terms`` accumulate the loss: a method adds its
    terms with :meth:`add`, in the order it computes them.
    """

    cfg: LossConfig
    values: ParamValues  # cfg as dotted parameter names -> values
    student: nn.Module
    teacher: nn.Module
    out: VNetOutput  # the student's outputs of all B volumes
    logits: torch.Tensor  # (B, K, X, Y, Z) student logits, float32
    t_out: VNetOutput  # the teacher's outputs of the B - n_labeled unlabeled volumes
    t_logits: torch.Tensor  # (B - n_labeled, K, X, Y, Z) teacher logits, float32
    images: torch.Tensor  # (B, C, X, Y, Z)
    labels: torch.Tensor  # (B, X, Y, Z) int64, real for the first n_labeled
    n_labeled: int
    step: int  # 0-based iteration
    w: float  # consistency ramp w(t)
    total_iterations: int
    n_classes: int
    total: torch.Tensor  # the loss so far (0-d)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def uses(self, term: Term) -> bool:
        """Whether ``term`` is on (its weight is not 0)."""
        return term.on(self.values)

    def add(self, weighted: torch.Tensor, logged: Mapping[Term, torch.Tensor]) -> None:
        """Add ``weighted`` (0-d) to the total and log the ``logged`` terms, detached.

        The total sums the terms in the order they are added (a float sum depends on it):
        ``L_sup``, then each term group as its method computes it."""
        self.total = self.total + weighted
        self.terms.update({term.name: value.detach() for term, value in logged.items()})


@dataclass(frozen=True)
class Method:
    """A training method's declaration; subclasses compute its terms in :meth:`add_terms`.

    ``order``: where it stands in :func:`names` and the log's columns (baselines first).
    ``aliases``: the configurations known by a name of their own (shown in result tables).
    """

    name: str
    description: str
    order: int
    semi_supervised: bool = True
    terms: tuple[Term, ...] = ()
    switches: tuple[Switch, ...] = ()
    aliases: tuple[Alias, ...] = ()

    def active_terms(self, values: ParamValues) -> tuple[Term, ...]:
        """The terms computed under ``values`` (dotted names -> values), in declared order."""
        return tuple(t for t in self.terms if t.on(values))

    def needs_projection(self, values: ParamValues) -> bool:
        """Whether a term computed under ``values`` uses the student's projection head."""
        return any(t.projection for t in self.active_terms(values))

    def switch_values(self, values: ParamValues) -> list[tuple[Switch, float]]:
        """Each switch with its value in ``values`` (dotted names -> values; a switch with a
        ``quiet`` value may be missing: runs logged before it existed had that value)."""
        return [(s, float(values[s.param] if s.quiet is None else values.get(s.param, s.quiet))) for s in self.switches]

    def named_switches(self, values: ParamValues) -> list[tuple[Switch, float]]:
        """The switches a name shows under ``values``: all but those at their ``quiet`` value."""
        return [(s, v) for s, v in self.switch_values(values) if s.named(v)]

    def alias(self, values: ParamValues) -> str | None:
        """The name of the configuration ``values`` sets, if it has one (:attr:`aliases`)."""
        switched = self.switch_values(values)
        return next((a.name for a in self.aliases if a.matches(switched)), None)

    def add_terms(self, batch: Batch) -> None:
        """Add the method's unsupervised terms to ``batch`` (:meth:`Batch.add`). Called only
        for semi-supervised methods, on batches with unlabeled volumes; none by default."""


@functools.cache
def _registry() -> dict[str, Method]:
    """Every method module of this package (but ``_private`` ones): their ``METHOD``s by name,
    in ``order``."""
    return discover_members(__name__, __path__, "METHOD", Method, named_after_module=True)


def names() -> tuple[str, ...]:
    """The methods' names: supervised, mean_teacher, ua_mt, cvcl (then any added one, by its ``order``)."""
    return tuple(_registry())


def get(name: str) -> Method:
    """The method called ``name``; :class:`ParamError` (for ``method``) naming the valid ones."""
    return member(_registry(), "method", name)


def all_terms() -> tuple[Term, ...]:
    """``loss_sup`` and every method's terms, in the methods' order, each once."""
    seen: dict[str, Term] = {SUPERVISED_TERM.name: SUPERVISED_TERM}
    for method in _registry().values():
        for term in method.terms:
            seen.setdefault(term.name, term)
    return tuple(seen.values())


def log_columns() -> list[str]:
    """The header of ``models/train_log.csv``: step, loss, the terms, then the schedules."""
    return [*_LEADING, *(t.name for t in all_terms()), *_TRAILING]
