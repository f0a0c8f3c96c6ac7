"""The package's import graph: no circles, and the registries on top.

The graph is read from the source, not from a running interpreter, so it sees every import a
module can make: at the top, inside functions (they run when called) and under ``if
TYPE_CHECKING:``. Counting the type-only imports is the stricter choice, and the one meant
here: a circle through an annotation is still two modules that each need the other to be
understood, and it turns into an ImportError the day the annotation becomes a runtime use.

Modules named in strings are not edges: a dataset declaration's
``converter("cvcl.datasets.nifti.convert")`` and the settings' ``"cvcl.methods:names"`` are
looked up by name on first use, as the registries find their members, precisely so that the
module naming them need not import them (``tests/test_dvc_deps.py`` follows them, for the
stages' deps).

An edge goes to the module an import names (``from cvcl.sources import protocol`` is an edge to
``cvcl.sources.protocol``; ``from cvcl.sources.protocol import CaseLists`` to the same module),
not to the packages above it that Python also runs: those ``__init__``s are light by design,
and counting them would make every package that imports one of its own modules a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "cvcl"

# The registries: each finds its members itself, and the layers below them are handed what a
# stage asked the registry for (a Dataset), never the registry. Their members (the dataset
# folders, the method modules) are the registries' own, so the layers below import neither.
# What is left importable is each registry's contract: cvcl.datasets.spec (Dataset, Published,
# Intensity, CopyPlan), which imports nothing but type-only names; the methods' contract lives
# in the registry module itself (cvcl.methods: Method, Term, Batch, LossConfig).
DATASETS, DATASET_CONTRACT = "cvcl.datasets", "cvcl.datasets.spec"
METHODS = "cvcl.methods"
# below the dataset registry: the shared machinery its members are built from, and everything
# that only ever sees processed cases
BELOW_DATASETS = (
    "cvcl.sources",
    "cvcl.preprocessing",
    "cvcl.io",
    "cvcl.data",
    "cvcl.training",
    "cvcl.inference",
    "cvcl.evaluation",
    "cvcl.models",
    "cvcl.losses",
    "cvcl.methods",
    "cvcl.tracking",
)
# below the method registry: what the methods are built from, and the data side. cvcl.training
# is not here: it is the methods' caller (the objective sums the terms of the method a stage
# names), as the stages are the dataset registry's.
BELOW_METHODS = (
    "cvcl.sources",
    "cvcl.preprocessing",
    "cvcl.io",
    "cvcl.data",
    "cvcl.inference",
    "cvcl.evaluation",
    "cvcl.models",
    "cvcl.losses",
    "cvcl.datasets",
)
# The one crossing, on purpose: predicting on an ``.h5`` scan without geometry reads it as the
# LA release's format, with the la converter's own reader (so both agree on spacing and checks).
CROSSINGS = {("cvcl.inference.scans", "cvcl.datasets.la.convert")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str:
    """The package a module's relative imports start from."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <node.module> import ...`` written in ``module``."""
    if node.level == 0:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _known(name: str) -> str | None:
    """``name`` if it is a cvcl module, else the nearest cvcl module above it (an attribute
    imported as ``cvcl.x.y`` belongs to ``cvcl.x``), or None outside the package."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> set[str]:
    """The cvcl modules ``module`` imports anywhere in its source (see the module docstring)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, node)
            for alias in node.names:
                # a submodule imported by name is an edge to it; any other name to its module
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return {known for name in found if (known := _known(name)) is not None and known != module}


GRAPH = {module: imports(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # absent: not seen; 1: on the current path; 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_imports_everywhere_a_module_makes_them():
    assert "cvcl.datasets.spec" in GRAPH["cvcl.datasets"]
    assert "cvcl.methods.cvcl" not in GRAPH["cvcl.methods"]  # found by name, at run time
    assert "cvcl.losses.pcl" in GRAPH["cvcl.methods.cvcl"]  # inside a function
    assert "cvcl.io.volume" in GRAPH["cvcl.datasets.spec"]  # under TYPE_CHECKING only
    assert "cvcl.sources.protocol" in GRAPH["cvcl.sources.local"]  # from cvcl.sources import protocol


def test_find_cycle_reports_the_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_itself_back():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_nothing_below_the_dataset_registry_imports_it_or_its_members():
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _under(module, BELOW_DATASETS)
        for target in targets
        if _under(target, (DATASETS,)) and target != DATASET_CONTRACT and (module, target) not in CROSSINGS
    )
    assert not offending, "; ".join(offending)


def test_nothing_below_the_method_registry_imports_it():
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _under(module, BELOW_METHODS)
        for target in targets
        if _under(target, (METHODS,))
    )
    assert not offending, "; ".join(offending)


def test_the_dataset_contract_is_a_leaf_of_the_data_side():
    # what spec imports (type-only) must not reach back into the registry or its members
    reached, todo = set(), [DATASET_CONTRACT]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert not {m for m in reached if _under(m, (DATASETS,))}, sorted(reached)


# Who may hold params.yaml's Params: the commands (each a stage-like entry) and the ``config``
# modules, whose builders a stage calls once at its entry to get typed configs; everything
# below is handed those configs.
def _reads_params(module: str) -> bool:
    return module.startswith("cvcl.commands.") or module.endswith(".config") or module == "cvcl.params"


def test_below_the_stages_only_the_config_builders_read_params():
    holders = sorted(m for m, targets in GRAPH.items() if "cvcl.params" in targets and not _reads_params(m))
    assert holders == [], f"these modules take Params instead of their typed configs: {holders}"
    # and the rule sees the builders (it would pass vacuously if the graph missed them)
    assert {"cvcl.training.config", "cvcl.inference.config", "cvcl.sources.config"} <= {
        m for m, targets in GRAPH.items() if "cvcl.params" in targets
    }
