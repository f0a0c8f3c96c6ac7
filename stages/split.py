"""Stage `split`: data/processed/ -> data/splits/split.json (labeled, unlabeled, val, test)."""

from cvcl import workspace
from cvcl.entrypoint import run_stage
from cvcl.data.split import make_split
from cvcl.io.atomic import write_json
from cvcl.params import load_params


def main() -> None:
    params = load_params()
    split = make_split(
        workspace.PROCESSED,
        labeled=params.get("labeled"),
        strategy=params.get("split.strategy"),
        val=params.get("split.val"),
        test_fraction=params.get("split.test_fraction"),
        seed=params.get("split.seed"),
    )
    write_json(workspace.SPLIT, split)
    made = split["protocol"] + (f", lists: {split['lists']}" if split.get("lists") else "")
    print(f"split ({made}): {len(split['labeled'])} labeled, {len(split['unlabeled'])} unlabeled, "
          f"{len(split['val'])} val, {len(split['test'])} test")
    if split.get("fallback"):
        print(f"split: {split['fallback']}")


if __name__ == "__main__":
    run_stage(main)
