from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from metastasis.data.cache import open_split
from metastasis.data.dataset import PatchDataset, passthrough
from metastasis.data.splits import stratified_split


def test_batched_fetch_equals_single_fetch(demo_data: Path) -> None:
    data = open_split(demo_data / "train", progress=False)
    ds = PatchDataset(data)
    batch = [7, 3, 150, 3, 0]
    images, labels = ds.__getitems__(batch)
    assert images.dtype == torch.uint8 and images.shape == (5, 96, 96, 3)
    for k, i in enumerate(batch):
        img, lab = ds[i]
        assert torch.equal(images[k], img) and int(labels[k]) == int(lab)


def test_loader_yields_whole_batches_in_seeded_order(demo_data: Path) -> None:
    data = open_split(demo_data / "train", progress=False)
    ds = PatchDataset(data, np.arange(0, 100))

    def first_labels(seed: int) -> list[int]:
        loader = DataLoader(
            ds,
            batch_size=32,
            shuffle=True,
            collate_fn=passthrough,
            generator=torch.Generator().manual_seed(seed),
        )
        return next(b[1].tolist() for b in loader)

    assert first_labels(1) == first_labels(1)
    sizes = [len(b[1]) for b in DataLoader(ds, batch_size=32, collate_fn=passthrough)]
    assert sizes == [32, 32, 32, 4]


def test_stratified_split_proportions_and_seed() -> None:
    labels = np.array([0] * 60 + [1] * 40)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert len(val) == 20 and labels[val].sum() == 8
    assert set(train).isdisjoint(val) and len(train) + len(val) == 100
    again = stratified_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(val, again[1])
    assert not np.array_equal(val, stratified_split(labels, 0.2, seed=1)[1])
