"""The public LA release (UA-MT's preprocessed h5 files), fetched over HTTPS and verified.

Raw form written (the release's own layout, so any tool written for it reads ``data/raw``)::

    <out>/2018LA_Seg_Training Set/<case_id>/mri_norm2.h5
    <out>/train.list, <out>/test.list   UA-MT's lists, in release order, for the fetched cases
    <out>/protocol.json                 which lists these are (cvcl.sources.protocol)
    <out>/files.sha256                  the digest of every file (``sha256sum -c`` format)

Every h5 file is checked against the sha256 and size in the manifest the package ships
(``cvcl/sources/data/la/manifest.csv``, all 100 cases); transfers are resumable and cached
(:mod:`cvcl.sources.transfer`).

Which cases are fetched:

- ``download.mirror: null``: all 100 cases from the public URL
  ``https://raw.githubusercontent.com/yulequan/UA-MT/master/data/2018LA_Seg_Training%20Set/<case>/mri_norm2.h5``,
  split by the shipped lists.
- ``download.mirror``: a local folder or an ``http(s)://`` base with the release's layout. If the
  mirror has its own ``train.list`` and ``test.list``, exactly the cases they name are fetched;
  each must be a case of the manifest in the same subset (a train.list case must be one of the
  release's 80 training cases), or the stage stops naming the list. A mirror without lists is
  taken to be complete: all 100 cases are fetched from it. Either way the lists written are the
  release's, in release order, restricted to the fetched cases, so "the first ``labeled`` cases of
  train.list" means the same as in the papers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tqdm import tqdm

from cvcl.errors import DataError, ParamError
from cvcl.sources import protocol
from cvcl.sources.layouts import LA_H5, LA_RELEASE_DIR, ORIGINS_FILE
from cvcl.sources.transfer import Fetcher, copy_verified, is_url

if TYPE_CHECKING:
    from cvcl.datasets.spec import Published
    from cvcl.sources.config import DownloadConfig

PUBLIC_BASE = "https://raw.githubusercontent.com/yulequan/UA-MT/master/data"
MANIFEST = protocol.SHIPPED / "la" / "manifest.csv"


@dataclass(frozen=True)
class ReleaseFile:
    """One case of the release as the manifest records it (``bytes`` of the h5 file)."""

    case_id: str
    split: str
    bytes: int
    sha256: str
    shape: tuple[int, int, int]


def read_manifest(path: Path = MANIFEST) -> dict[str, ReleaseFile]:
    """The manifest's cases by id, in its (list) order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        r["case_id"]: ReleaseFile(r["case_id"], r["split"], int(r["bytes"]), r["sha256"].lower(), _shape(r["shape"]))
        for r in rows
    }


def _shape(text: str) -> tuple[int, int, int]:
    """A manifest's shape, ``112x112x80``, as voxels per axis."""
    x, y, z = (int(s) for s in text.split("x"))
    return x, y, z


@dataclass(frozen=True)
class LAConfig:
    """``mirror``: None for the public URL, else a folder path or an http(s) URL base."""

    mirror: str | None = None


def config(download: DownloadConfig) -> LAConfig:
    """``download.mirror``, checked: a URL, or a folder that exists."""
    name = "download.mirror"
    mirror = download.mirror
    if mirror is not None and not is_url(mirror) and not Path(mirror).is_dir():
        raise ParamError(
            name,
            mirror,
            "null (the public URL), an http(s):// URL base or an existing folder "
            f"with the LA release layout ({LA_RELEASE_DIR}/<case>/{LA_H5})",
        )
    return LAConfig(mirror)


def _join(base: str, rel: str) -> str:
    if is_url(base):
        return base.rstrip("/") + "/" + quote(rel)
    return str(Path(base) / rel)


def case_source(base: str, case_id: str) -> str:
    """Where case ``case_id`` lives under ``base`` (URL-quoted for a URL base)."""
    return _join(base, f"{LA_RELEASE_DIR}/{case_id}/{LA_H5}")


def plan(cfg: LAConfig, fetcher: Fetcher, published: Published) -> tuple[str, list[ReleaseFile], protocol.CaseLists]:
    """``(base, cases to fetch in release order, the lists to write)`` by the rule in the docstring;
    ``published`` is the release's split (``la``'s declaration: UA-MT's lists)."""
    manifest = read_manifest()
    release = protocol.shipped(published)
    if cfg.mirror is None:
        return PUBLIC_BASE, list(manifest.values()), release
    base = cfg.mirror
    fetched = {name: fetcher.read_text(_join(base, name)) for name in ("train.list", "test.list")}
    texts = {k: v for k, v in fetched.items() if v is not None}
    if not texts:
        return base, list(manifest.values()), release
    lists = protocol.parse_lists(texts, where=base)
    for subset, ids in lists.items():
        for case_id in ids:
            if case_id not in manifest:
                raise DataError(
                    _join(base, f"{subset}.list"), f"names case {case_id}, which is not in the LA release manifest"
                )
            if manifest[case_id].split != subset:
                raise DataError(
                    _join(base, f"{subset}.list"),
                    f"names case {case_id}, a {manifest[case_id].split} case of the release",
                )
    wanted = {c for ids in lists.values() for c in ids}
    cases = [f for f in manifest.values() if f.case_id in wanted]
    description = f"{release.description}, restricted to the {len(cases)} cases of the mirror's lists"
    return base, cases, release.restricted(wanted, description)


def write_raw(
    cfg: LAConfig, published: Published, out: Path, *, progress: bool = True, fetcher: Fetcher | None = None
) -> dict:
    """Fetch, verify and lay out the release, split by ``published``, in the (empty, temporary)
    folder ``out``."""
    fetcher = fetcher or Fetcher()
    base, cases, lists = plan(cfg, fetcher, published)
    lines, origins = [], {}
    with tqdm(
        total=sum(f.bytes for f in cases),
        desc="download la",
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
    ) as bar:
        fetcher.progress = bar
        try:
            for f in cases:
                cached = fetcher.fetch(case_source(base, f.case_id), f.sha256, f.bytes)
                rel = f"{LA_RELEASE_DIR}/{f.case_id}/{LA_H5}"
                copy_verified(cached, out / rel, f.sha256)
                lines.append(f"{f.sha256}  {rel}\n")
                origins[rel] = case_source(base, f.case_id)
        finally:
            fetcher.progress = None
    (out / "files.sha256").write_text("".join(lines))
    (out / ORIGINS_FILE).write_text(json.dumps(origins, indent=1, sort_keys=True))
    return protocol.write(out, "la", lists)
