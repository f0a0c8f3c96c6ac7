"""The DVC remote, set up the project's way: ``cvcl remote URL`` (``make remote URL=...``).

    cvcl remote /mnt/nas/dvc/cvcl                        # or ssh://..., s3://...
    cvcl remote                                          # the existing remote 'storage'
    cvcl remote --local --no-default --name ssh ssh://...   # this clone only

adds (or re-points) the remote ``--name`` (default ``storage``), makes it the default one, and sets
its ``verify = true``: ``dvc pull`` / ``dvc fetch`` then rehash every object they download and
refuse one whose content does not match its name (the pull fails naming the output; the workspace
does not get the corrupted bytes). DVC's own default is ``verify = false``, with which a corrupted
object on the remote is copied into the cache and the workspace and the pull succeeds
(``tests/test_interrupted_transfers.py`` shows both). Without ``--local`` the setting goes to the
committed ``.dvc/config``, so every clone has it.
"""

from __future__ import annotations

import argparse

from cvcl.errors import CvclError


class RemoteError(CvclError):
    """The DVC remote could not be configured."""


def configure(url: str | None, name: str = "storage", local: bool = False, default: bool = True) -> None:
    """Add or re-point remote ``name`` at ``url`` (if given), make it the default, turn verify on.

    Edits the DVC configuration of the repository around the working directory through DVC's own
    ``Config.edit``, as ``dvc remote add/modify/default`` do (one process instead of three).
    """
    from dvc.config import Config, merge
    from dvc.exceptions import DvcException

    name = name.lower()  # as `dvc remote` does
    level = "local" if local else "repo"
    try:
        config = Config.from_cwd()
        with config.edit(level) as conf:
            merged = config.load_config_to_level(level)
            merge(merged, conf)
            if url:
                conf["remote"].setdefault(name, {})["url"] = url  # an existing remote keeps its options
            elif name not in merged["remote"]:
                where = ".dvc/config.local" if local else ".dvc/config"
                raise RemoteError(f"no DVC remote {name!r} in {where}: give its URL, cvcl remote [--name {name}] URL")
            conf["remote"].setdefault(name, {})["verify"] = "true"
            if default:
                conf["core"]["remote"] = name
    except DvcException as exc:
        raise RemoteError(f"DVC remote {name!r}: {exc}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvcl remote", description=__doc__.split("\n\n")[0])
    p.add_argument("url", nargs="?", help="the remote's URL or folder (omit: the existing remote --name)")
    p.add_argument("--name", default="storage", help="the remote's name (default storage)")
    p.add_argument(
        "--local",
        action="store_true",
        help="in .dvc/config.local (this clone only, not committed) instead of .dvc/config",
    )
    p.add_argument("--no-default", dest="default", action="store_false", help="do not make it the default remote")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure(args.url, args.name, args.local, args.default)
    where = ".dvc/config.local" if args.local else ".dvc/config"
    print(f"DVC remote {args.name.lower()!r} in {where}{' (default)' if args.default else ''}, verify = true")
    if not args.local:
        print("commit it for every clone: git add .dvc/config && git commit -m 'DVC remote'")
    return 0
