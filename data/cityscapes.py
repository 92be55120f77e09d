"""Cityscapes as it is unpacked: `--data cityscapes:ROOT`.

`ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png`, with the label
`ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png` where present (train ids,
used as they are: what cityscapesScripts' createTrainIdLabelImgs writes and DeepLab trains on), else
`..._gtFine_labelIds.png` (Cityscapes' label ids, mapped to the 19 train ids by the official table;
every id outside the 19 classes becomes 255, ignored).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from data.datasets import IGNORE_LABEL, DatasetError, FileDataset, read_label_png
from zoo import labels

# The 19 evaluated classes, in train-id order (zoo/labels.py holds every dataset's names).
CITYSCAPES_LABELS = list(labels.CITYSCAPES_LABELS)
# Cityscapes' official table (cityscapesscripts/helpers/labels.py): label id -> train id, for the ids
# that have one; the other ids 0..33 are ignored.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
MAX_LABEL_ID = 33  # "bicycle"; the license plate's id -1 is stored as 255
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"


def _train_id_table() -> np.ndarray:
    table = np.full(256, IGNORE_LABEL, np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


TRAIN_ID_TABLE = _train_id_table()


def read_label_ids(path: str) -> np.ndarray:
    """Reads a `*_gtFine_labelIds.png` as train ids (uint8 HxW); DatasetError for an id Cityscapes does not have."""
    ids = read_label_png(path)
    bad = (ids > MAX_LABEL_ID) & (ids != IGNORE_LABEL)
    if bad.any():
        raise DatasetError(f"label id {int(ids[bad].max())} is not a Cityscapes label id (0-{MAX_LABEL_ID}): {path}")
    return TRAIN_ID_TABLE[ids]


def cityscapes_samples(root: str, split: str) -> list[tuple[str, str, Callable[[str], np.ndarray]]]:
    """The (image, label, label reader) triples of `split`, sorted by city and file name."""
    if not os.path.isdir(root):
        raise DatasetError(f"Cityscapes folder not found: {root}")
    images = os.path.join(root, "leftImg8bit", split)
    labels = os.path.join(root, "gtFine", split)
    for folder in (images, labels):
        if not os.path.isdir(folder):
            raise DatasetError(f"Cityscapes {split} folder not found: {folder} (expected leftImg8bit/ and gtFine/ in {root})")
    samples = []
    for city in sorted(os.listdir(images)):
        if not os.path.isdir(os.path.join(images, city)):
            continue
        for name in sorted(os.listdir(os.path.join(images, city))):
            if not name.endswith(IMAGE_SUFFIX):
                continue
            image = os.path.join(images, city, name)
            stem = os.path.join(labels, city, name[: -len(IMAGE_SUFFIX)])
            if os.path.isfile(stem + TRAIN_IDS_SUFFIX):
                samples.append((image, stem + TRAIN_IDS_SUFFIX, read_label_png))
            elif os.path.isfile(stem + LABEL_IDS_SUFFIX):
                samples.append((image, stem + LABEL_IDS_SUFFIX, read_label_ids))
            else:
                raise DatasetError(f"no label {stem + LABEL_IDS_SUFFIX} (nor {TRAIN_IDS_SUFFIX}) for image {image}")
    if not samples:
        raise DatasetError(f"the {split} split of Cityscapes is empty: no *{IMAGE_SUFFIX} in {images}/<city>/")
    return samples


def open_cityscapes(spec: str, root: str, split: str) -> FileDataset:
    """`--data cityscapes:ROOT` at `split`: the 19 train-id classes."""
    return FileDataset("cityscapes", spec, split, CITYSCAPES_LABELS, cityscapes_samples(root, split))
