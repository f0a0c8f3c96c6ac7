"""Stage `split`: data/processed/ -> data/splits/split.json (labeled, unlabeled, val, test)."""

from cvcl import workspace
from cvcl.data.split import SplitConfig, make_split
from cvcl.entrypoint import run_stage
from cvcl.io.atomic import write_json
from cvcl.params import load_params


def main() -> None:
    params = load_params()
    labeled = params.get("labeled")
    cfg = params.config(SplitConfig, "split")
    split = make_split(
        workspace.PROCESSED,
        labeled=labeled,
        strategy=cfg.strategy,
        val=cfg.val,
        test_fraction=cfg.test_fraction,
        seed=cfg.seed,
    )
    write_json(workspace.SPLIT, split)
    made = split["protocol"] + (f", lists: {split['lists']}" if split.get("lists") else "")
    print(
        f"split ({made}): {len(split['labeled'])} labeled, {len(split['unlabeled'])} unlabeled, "
        f"{len(split['val'])} val, {len(split['test'])} test"
    )
    if split.get("fallback"):
        print(f"split: {split['fallback']}")


if __name__ == "__main__":
    run_stage(main)
