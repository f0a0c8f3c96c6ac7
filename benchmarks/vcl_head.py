"""How much the VCL head can tell voxels apart at initialisation, per hidden width.

    python benchmarks/vcl_head.py [--processed data/processed] [--widths 8 64] [--seeds 1 2 3]

For each hidden width of the projection head (``model.embed_hidden``; 8 is the old head at
f = 8) and each seed: a freshly initialised V-Net (the same V-Net weights for every width at one
seed, the head being built last), 2 random 64x64x32 crops of labeled processed cases, anchors
drawn as in training (ground truth as reference, the network's argmax as prediction), and the
embeddings' mean pairwise cosine (all anchors, and within / across classes), the labeled
InfoNCE and ``log`` of the anchors per class (what the InfoNCE reads when the embeddings tell
nothing apart). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cvcl.data.augment import random_crop  # noqa: E402
from cvcl.io.volume import read_case  # noqa: E402
from cvcl.losses.vcl import gather_features, sample_anchors, supervised_infonce  # noqa: E402
from cvcl.models.vnet import VNet  # noqa: E402
from cvcl.workspace import case_file, read_manifest  # noqa: E402


def crops(processed: Path, n: int, patch: tuple[int, int, int], rng: np.random.Generator):
    """``n`` random labeled crops: images ``(n, 1, *patch)`` float32, labels ``(n, *patch)`` int64."""
    labeled = [row["case_id"] for row in read_manifest(processed)]
    images, labels = [], []
    for case_id in rng.choice(labeled, size=n, replace=False):
        case = read_case(case_file(case_id, processed))
        image, label = random_crop(case.image, case.label, patch, rng)
        images.append(image)
        labels.append(label.astype(np.int64))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def measure(width: int, seed: int, images: torch.Tensor, labels: torch.Tensor, n_anchor: int) -> dict[str, float]:
    torch.manual_seed(seed)
    net = VNet(base_filters=8, norm="instance", embed_dim=64, embed_hidden=width)
    with torch.no_grad():
        out = net(images)
        anchors = sample_anchors(labels, out.logits.argmax(1), 2, n_anchor, torch.Generator().manual_seed(seed))
        features, classes, valid = gather_features(out.d9, anchors)
        emb = net.project_rows(features)[valid]
        classes = classes[valid]
        cos = emb @ emb.T
        off = ~torch.eye(len(emb), dtype=torch.bool)
        same = (classes[:, None] == classes[None, :]) & off
        other = classes[:, None] != classes[None, :]
        infonce = supervised_infonce(emb, classes, torch.ones(len(emb), dtype=torch.bool), 0.1)
    return {
        "cos_all": cos[off].mean().item(),
        "cos_same": cos[same].mean().item(),
        "cos_other": cos[other].mean().item(),
        "infonce": infonce.item(),
        "log_anchors": math.log(len(emb) / 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processed", type=Path, default=Path("data/processed"))
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--n-anchor", type=int, default=100)
    args = ap.parse_args()
    if not (args.processed / "manifest.csv").is_file():
        print(f"error: {args.processed}/manifest.csv: not found; run `dvc repro preprocess` first", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results: dict[int, list[dict[str, float]]] = {w: [] for w in args.widths}
    for seed in args.seeds:
        images, labels = crops(args.processed, 2, (64, 64, 32), np.random.default_rng(seed))
        for width in args.widths:
            results[width].append(measure(width, seed, images, labels, args.n_anchor))
    print(
        f"{'hidden':>6}  {'cos all':>8}  {'same':>6}  {'other':>6}  {'InfoNCE':>8}  {'log n':>6}   (means over seeds)"
    )
    summary = {}
    for width, rows in results.items():
        mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        summary[width] = mean
        print(
            f"{width:>6}  {mean['cos_all']:8.3f}  {mean['cos_same']:6.3f}  {mean['cos_other']:6.3f}  "
            f"{mean['infonce']:8.3f}  {mean['log_anchors']:6.3f}",
            flush=True,
        )
    print(json.dumps({"seeds": args.seeds, "by_hidden_width": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
