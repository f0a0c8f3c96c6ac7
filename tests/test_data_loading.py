import numpy as np

from cvcl.data.augment import random_crop, random_rot_flip
from cvcl.data.dataset import PatchDataset
from cvcl.data.sampler import TwoStreamBatchSampler
from cvcl.io.volume import Case, Geometry, write_case


def test_two_stream_batches_mix_labeled_and_unlabeled():
    sampler = TwoStreamBatchSampler(range(3), range(3, 10), batch_size=4, labeled_bs=2, num_batches=30, seed=1)
    batches = list(sampler)
    assert len(batches) == 30
    for batch in batches:
        idx = [i for i, _ in batch]
        assert all(i < 3 for i in idx[:2]) and all(i >= 3 for i in idx[2:])
    # the labeled stream visits each case once per pass of three
    labeled = [i for b in batches for i, _ in b[:2]]
    for start in range(0, 60, 3):
        assert sorted(labeled[start:start + 3]) == [0, 1, 2]
    assert list(TwoStreamBatchSampler(range(3), range(3, 10), 4, 2, 30, seed=1)) == batches


def test_sampler_works_when_labeled_cases_are_fewer_than_the_labeled_batch():
    batches = list(TwoStreamBatchSampler([0], [1, 2], batch_size=3, labeled_bs=2, num_batches=3))
    assert all([i for i, _ in b[:2]] == [0, 0] for b in batches)


def test_rot_flip_moves_image_and_label_together(rng):
    img = rng.normal(size=(1, 6, 5, 4)).astype(np.float32)
    lab = (img[0] > 0).astype(np.uint8)
    for _ in range(10):
        a, b = random_rot_flip(img, lab, rng)
        np.testing.assert_array_equal(a[0] > 0, b.astype(bool))


def test_crop_pads_small_volumes(rng):
    img = np.ones((1, 10, 40, 8), np.float32)
    lab = np.ones((10, 40, 8), np.uint8)
    a, b = random_crop(img, lab, (16, 16, 16), rng)
    assert a.shape == (1, 16, 16, 16) and b.shape == (16, 16, 16)
    assert a.sum() < 16 ** 3  # zero padding


def test_unlabeled_cases_never_carry_their_labels(tmp_path, rng):
    for name in ("lab", "unl"):
        write_case(tmp_path / f"{name}.h5", Case(name, rng.normal(size=(1, 20, 20, 20)).astype(np.float32),
                                                 np.ones((20, 20, 20), np.uint8), Geometry.from_spacing((1, 1, 1))))
    ds = PatchDataset(tmp_path, ["lab"], ["unl"], (16, 16, 16))
    lab, unl = ds[(0, 1)], ds[(1, 1)]
    assert lab["label"].sum() > 0
    assert unl["label"].sum() == 0 and set(unl) == {"image", "label"}
    assert ds.labels[1] is None
