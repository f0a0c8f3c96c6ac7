"""Local copies (`nifti`, and archives for every local source): verified copies, safe extraction."""

import hashlib
import io
import json
import tarfile
import zipfile

import nibabel as nib
import numpy as np
import pytest

from cvcl import datasets
from cvcl.data.split import make_split
from cvcl.errors import DataError, ParamError
from cvcl.io.volume import nifti_image, read_case
from cvcl.preprocessing import preprocess
from cvcl.sources import fetch
from cvcl.sources.archive import safe_extract
from cvcl.sources.config import DownloadConfig, SourceSettings

AFFINE = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 2.0, -30], [0, 0, 0, 1]])


def nnunet_folder(root, rng, cases=("c0", "c1", "c2"), lists=True):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case_id in cases:
        label = np.zeros((16, 16, 12), np.uint8)
        label[4:10, 5:11, 3:8] = 1
        nib.save(
            nifti_image(rng.normal(100, 10, (16, 16, 12)).astype(np.float32), AFFINE),
            root / "imagesTr" / f"{case_id}_0000.nii.gz",
        )
        nib.save(nifti_image(label, AFFINE), root / "labelsTr" / f"{case_id}.nii.gz")
    (root / "imagesTr" / ".DS_Store").write_text("finder")
    (root / "imagesTr" / "._c0_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (root / "dataset.json").write_text('{"name": "mine"}')
    if lists:
        (root / "train.list").write_text("c2\nc0\n")
        (root / "test.list").write_text("c1\n")
    return root


def download(local, out):
    return fetch(datasets.get("nifti"), SourceSettings(DownloadConfig(local_path=str(local))), out, progress=False)


def test_nifti_folder_is_copied_verified_with_its_lists(tmp_path, rng):
    src = nnunet_folder(tmp_path / "Dataset001_Mine", rng)
    raw = tmp_path / "raw"
    record = download(src, raw)
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == [
        "c0_0000.nii.gz",
        "c1_0000.nii.gz",
        "c2_0000.nii.gz",
    ]
    for line in (raw / "files.sha256").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        assert hashlib.sha256((raw / rel).read_bytes()).hexdigest() == digest
        assert (raw / rel).read_bytes() == (src / rel).read_bytes()
    assert record["lists"] == "user" and (raw / "train.list").read_text().split() == ["c2", "c0"]
    preprocess(datasets.get("nifti"), raw, tmp_path / "p", progress=False)
    split = make_split(tmp_path / "p", labeled=1)
    assert split["lists"] == "user" and split["labeled"] == ["c2"] and split["test"] == ["c1"]
    np.testing.assert_allclose(read_case(tmp_path / "p" / "c0.h5").geometry.affine, AFFINE)


def test_nifti_without_lists_asks_for_a_random_split(tmp_path, rng):
    src = nnunet_folder(tmp_path / "mine", rng, lists=False)
    record = download(src, tmp_path / "raw")
    assert record["lists"] is None and record["fallback"] is None
    preprocess(datasets.get("nifti"), tmp_path / "raw", tmp_path / "p", progress=False)
    with pytest.raises(ParamError, match="split.strategy"):
        make_split(tmp_path / "p", labeled=1)
    assert make_split(tmp_path / "p", labeled=1, strategy="random", test_fraction=0.34)["protocol"] == "random"


def test_lists_naming_missing_cases_are_refused(tmp_path, rng):
    src = nnunet_folder(tmp_path / "mine", rng)
    (src / "test.list").write_text("c1\nc9\n")
    with pytest.raises(DataError, match=r"test.list: names 1 cases the copy does not hold, e.g. c9"):
        download(src, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_is_extracted_and_unwrapped(tmp_path, rng, kind):
    src = nnunet_folder(tmp_path / "build" / "Dataset001_Mine", rng)
    archive = tmp_path / f"Dataset001_Mine.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted(src.rglob("*")):
                zf.write(p, p.relative_to(src.parent).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(src, arcname=src.name)
    raw = tmp_path / "raw"
    record = download(archive, raw)
    assert sorted(p.name for p in raw.iterdir()) == [
        "dataset.json",
        "files.sha256",
        "imagesTr",
        "labelsTr",
        "origins.json",
        "protocol.json",
        "test.list",
        "train.list",
    ]
    assert record["lists"] == "user"
    origins = json.loads((raw / "origins.json").read_text())
    assert origins["labelsTr/c1.nii.gz"] == f"{archive}/Dataset001_Mine/labelsTr/c1.nii.gz"
    assert (raw / "labelsTr" / "c1.nii.gz").read_bytes() == (src / "labelsTr" / "c1.nii.gz").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_errors_inside_an_archive_name_the_archive(tmp_path, rng):
    src = nnunet_folder(tmp_path / "build" / "mine", rng)
    (src / "test.list").write_text("c1\nc9\n")
    archive = tmp_path / "mine.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="mine")
    with pytest.raises(DataError) as info:
        download(archive, tmp_path / "raw")
    assert str(info.value).startswith(f"{archive}/mine/test.list: names 1 cases")
    assert ".extract" not in str(info.value) and not (tmp_path / "raw").exists()


def tar_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("dataset/readme.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        if member.isreg():
            member.size = len(data)
        tf.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


def symlink(name, target, hard=False):
    m = tarfile.TarInfo(name)
    m.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    m.linkname = target
    return m


@pytest.mark.parametrize(
    "member,why",
    [
        (tarfile.TarInfo("/etc/cron.d/evil"), "absolute path"),
        (tarfile.TarInfo("dataset/../../evil"), "'..' component"),
        (symlink("dataset/passwd", "/etc/passwd"), "is a symbolic link"),
        (symlink("dataset/up", "../../outside"), "is a symbolic link"),
        (symlink("dataset/hard", "../outside", hard=True), "is a hard link"),
    ],
)
def test_unsafe_tar_members_are_refused_before_anything_is_written(tmp_path, member, why):
    archive = tar_with(tmp_path, member)
    target = tmp_path / "out"
    with pytest.raises(DataError, match=why) as info:
        safe_extract(archive, target)
    assert "evil.tar" in str(info.value)
    assert list(target.iterdir()) == []  # not even the harmless member


def test_unsafe_zip_members_are_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("dataset/ok.txt", "ok")
        zf.writestr("dataset/../../evil.txt", "boom")
    with pytest.raises(DataError, match="'..' component"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and list((tmp_path / "out").iterdir()) == []
    link = zipfile.ZipInfo("dataset/link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="is a symbolic link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out2")


def test_even_a_harmless_looking_link_is_refused(tmp_path):
    archive = tar_with(tmp_path, symlink("dataset/alias.txt", "readme.txt"))
    with pytest.raises(DataError, match=r"member 'dataset/alias.txt' is a symbolic link"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# The chain that escaped (issue 12): each link looks local, together they climb four levels.
CHAIN = [("s", "."), ("s/s/s/s/L", "../../../..")]


def _files_outside(root, inside):
    return sorted(str(p) for p in root.rglob("*") if inside not in p.parents and p != inside)


def _zip_chain(archive):
    with zipfile.ZipFile(archive, "w") as zf:
        for name, link in CHAIN:
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, link)
        zf.writestr("L/EVIL.txt", "boom")


def _tar_chain(archive):
    with tarfile.open(archive, "w") as tf:
        for name, link in CHAIN:
            tf.addfile(symlink(name, link))
        info = tarfile.TarInfo("L/EVIL.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"boom"))


@pytest.mark.parametrize("suffix,build", [("zip", _zip_chain), ("tar", _tar_chain)])
def test_a_link_chain_cannot_write_outside(tmp_path, suffix, build):
    deep = tmp_path / "a" / "b" / "c" / "d"  # four levels for the chain to climb
    deep.mkdir(parents=True)
    archive = tmp_path / f"chain.{suffix}"
    build(archive)
    before = _files_outside(tmp_path, deep / "out")
    with pytest.raises(DataError, match=r"member 's' is a symbolic link"):
        safe_extract(archive, deep / "out")
    assert _files_outside(tmp_path, deep / "out") == before and not list(tmp_path.rglob("EVIL.txt"))
    assert list((deep / "out").iterdir()) == []


def test_an_unsafe_archive_leaves_no_raw_folder(tmp_path):
    archive = tar_with(tmp_path, tarfile.TarInfo("dataset/../../evil"))
    with pytest.raises(DataError, match="refusing to extract"):
        download(archive, tmp_path / "data" / "raw")
    assert list((tmp_path / "data").iterdir()) == []  # the temporary folder is gone too


def test_a_corrupt_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="broken.zip: is not a readable archive"):
        download(archive, tmp_path / "raw")


def test_preprocess_errors_name_the_users_original_file(tmp_path, rng):
    from cvcl.preprocessing import preprocess

    src = nnunet_folder(tmp_path / "mine", rng)
    bad = src / "labelsTr" / "c1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    raw = tmp_path / "raw"
    download(src, raw)
    with pytest.raises(DataError) as info:
        preprocess(datasets.get("nifti"), raw, tmp_path / "processed", progress=False)
    message = str(info.value)
    assert message.startswith(f"{bad} (copied to {raw}") and "labelsTr/c1.nii.gz" in message
