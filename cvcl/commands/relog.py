"""Re-log an MLflow model that was logged as a pickle (the project's format before models were
logged as weights) as weights, in the same run: afterwards ``runs:/<run_id>/model`` is the weights
model and loads without ``--allow-pickle``.

    cvcl relog --model runs:/<run_id>/model --allow-pickle

Loading the old model unpickles it, which runs whatever code it holds: do this once, for models
from a store whose writers you trust (docs/security.md). A registered version points at the
pickle it was made from; register the re-logged run again (``cvcl register``) to replace it.
"""

from __future__ import annotations

import argparse

from cvcl.errors import DataError, ParamError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvcl relog", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="runs:/<run_id>/model of a model logged as a pickle")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="required: say that you trust whoever logged the pickled model (loading it runs its code)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.model.startswith("runs:/"):
        raise ParamError("--model", args.model, "runs:/<run_id>/model (the run the weights are logged to)")
    if not args.allow_pickle:
        raise ParamError("--allow-pickle", False, "given: re-logging loads the pickled model, which runs its code")
    from cvcl.models.vnet import VNet
    from cvcl.tracking.model import check_model_flavor, load_mlflow_model, log_model
    from cvcl.tracking.run import Run, store_client
    from cvcl.tracking.weights_flavor import FLAVOR_NAME

    if check_model_flavor(args.model, allow_pickle=True) == FLAVOR_NAME:
        print(f"relog: {args.model} is already weights; nothing to do")
        return 0
    old = load_mlflow_model(args.model, allow_pickle=True)
    network = getattr(old.network, "vnet", old.network)  # the pickles held VNetLogits(vnet)
    if not isinstance(network, VNet):
        raise DataError(args.model, f"holds a {type(network).__name__}, not a V-Net: nothing to re-log")
    run_id = args.model.removeprefix("runs:/").split("/")[0]
    uri = log_model(Run(store_client(), run_id), network, old.metadata)
    print(f"relog: {args.model} re-logged as weights ({uri}); it now loads without --allow-pickle")
    return 0
