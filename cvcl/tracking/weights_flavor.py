"""The project's MLflow model flavour: a V-Net as weights and JSON, never as code.

A logged model is a folder holding ``MLmodel`` (YAML, read with a safe loader), ``data/weights.pt``
(the network's state dict: plain tensors, read back with ``torch.load(weights_only=True)``, which
refuses anything else a pickle could carry) and ``data/cvcl.json`` (the ``cvcl`` metadata:
``model_config``, the preprocessing recipe, the window settings). The network is rebuilt from
``model_config`` by this package's own code, so reading a model from a tracking store, a
registry or a teammate runs no code that came with it.

The MLmodel lists two flavours: :data:`FLAVOR_NAME` (what ``cvcl predict`` reads) and
``python_function`` with this module as its loader *by name*, so ``mlflow.pyfunc.load_model``
works wherever ``cvcl`` is installed, importing the installed code, not the store's. Models
logged before this flavour (MLflow's ``pytorch`` flavour, a pickle) load only with an explicit
opt-in (``--allow-pickle``; docs/security.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cvcl.errors import DataError

FLAVOR_NAME = "cvcl_vnet"
FORMAT_VERSION = 2  # 1: MLflow's pickled pytorch flavour (before the weights flavour)
DATA = "data"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "cvcl.json"


def save_model(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    cvcl_metadata: dict,
    mlflow_model: Any = None,
    signature: Any = None,
    **_: Any,
) -> None:
    """Write the model folder at ``path`` (MLflow's custom-flavour hook: :meth:`mlflow.models.Model.log`
    calls it with the ``mlflow_model`` being logged)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    path = Path(path)
    (path / DATA).mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, path / DATA / WEIGHTS_FILE)
    (path / DATA / METADATA_FILE).write_text(json.dumps(cvcl_metadata, indent=2) + "\n")
    model = mlflow_model if mlflow_model is not None else Model()
    if signature is not None:
        model.signature = signature
    model.add_flavor(
        FLAVOR_NAME,
        weights=f"{DATA}/{WEIGHTS_FILE}",
        metadata=f"{DATA}/{METADATA_FILE}",
        format_version=FORMAT_VERSION,
        torch_version=torch.__version__.split("+")[0],
    )
    mlflow.pyfunc.add_to_model(model, loader_module=__name__, data=DATA)
    (path / "requirements.txt").write_text(f"torch=={torch.__version__.split('+')[0]}\nmlflow\n")
    model.save(str(path / "MLmodel"))


def _inside(folder: Path, relative: str, uri: str) -> Path:
    """``folder / relative``, refused when the MLmodel's path leaves the model folder."""
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise DataError(uri, f"names a file outside the model folder ({relative!r})")
    return target


def load_network(folder: str | Path, uri: str = "") -> tuple[torch.nn.Module, dict]:
    """The V-Net of a downloaded model folder (eval mode, CPU) and its ``cvcl`` metadata,
    rebuilt from ``model_config`` and filled with weights read as tensors only. One-line
    :class:`DataError` naming ``uri`` when the folder is not this flavour or its files are not
    plain weights."""
    from mlflow.models import Model

    from cvcl.models.config import ModelConfig, build_model

    folder = Path(folder)
    where = uri or str(folder)
    conf = Model.load(str(folder)).flavors.get(FLAVOR_NAME)
    if conf is None:
        raise DataError(where, f"is not a {FLAVOR_NAME} model")
    try:
        metadata = json.loads(_inside(folder, conf["metadata"], where).read_text())
        config = ModelConfig(**metadata["model_config"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise DataError(where, f"has no readable model_config ({type(exc).__name__})") from None
    try:
        state = torch.load(_inside(folder, conf["weights"], where), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only's refusal of a pickled object arrives as an UnpicklingError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(where, f"holds weights that are not plain tensors: refused ({first})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(where, "holds weights that are not a state dict of tensors")
    network = build_model(config, with_projection=False)
    try:
        network.load_state_dict({k: v for k, v in state.items() if not k.startswith("projection.")})
    except RuntimeError as exc:
        raise DataError(where, f"holds weights that do not fit its model_config ({str(exc).splitlines()[0]})") from None
    return network.eval(), metadata


class _PyFuncVNet:
    """``mlflow.pyfunc``'s view: ``predict(image)`` with an array ``(B, C, X, Y, Z)`` float32 ->
    logits ``(B, K, X, Y, Z)`` as a numpy array."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def predict(self, model_input: Any, params: dict | None = None) -> Any:
        if isinstance(model_input, dict):  # the signature names its one input "image"
            model_input = model_input["image"] if "image" in model_input else next(iter(model_input.values()))
        with torch.no_grad():
            x = torch.as_tensor(model_input, dtype=torch.float32)
            return self.network(x).logits.numpy()


def _load_pyfunc(data_path: str) -> _PyFuncVNet:
    """``mlflow.pyfunc.load_model``'s hook (``data_path``: the model folder's ``data``)."""
    network, _ = load_network(Path(data_path).parent)
    return _PyFuncVNet(network)
