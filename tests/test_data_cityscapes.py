"""`--data cityscapes:ROOT` on a small Cityscapes tree in its real layout: the label-id table, train-id
labels used as they are, a tiny training run and evaluation, and the errors that name the file."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from data.datasets import DatasetError, open_dataset

H, W = 64, 128
# Cityscapes' official table (cityscapesscripts/helpers/labels.py), written out here and not imported:
# label id -> train id; every other id is ignored (255).
OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
            26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
NAMES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
         "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]  # fmt: skip
# Every label id Cityscapes has (0..33, and the license plate's -1 stored as 255), one per column, repeated.
LABEL_IDS = np.resize(np.array(list(range(34)) + [255], np.uint8), W)
TINY_TRAIN = ["--model", "mobilenetv2_ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65",
              "--batch-size", "2", "--steps", "1"]  # fmt: skip


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


def image_of(seed):
    return np.random.RandomState(seed).randint(0, 256, (H, W, 3), np.uint8)


def label_ids(shift):
    """H x W label ids: every row holds all ids, each row shifted, so rows differ."""
    return np.stack([np.roll(LABEL_IDS, shift + row) for row in range(H)])


def make_cityscapes(root):
    """2 cities of train (one frame with a labelTrainIds file beside its labelIds), 1 val frame.

    Returns {split: [(stem, label written, expected train ids)]} in the order the dataset reads them.
    """
    frames = {"train": [("aachen", "000000", "000019"), ("aachen", "000001", "000019"), ("bremen", "000000", "000019")],
              "val": [("frankfurt", "000000", "000294")]}  # fmt: skip
    table = np.full(256, 255, np.uint8)
    for label_id, train_id in OFFICIAL.items():
        table[label_id] = train_id
    written = {}
    for split, names in frames.items():
        written[split] = []
        for i, (city, seq, frame) in enumerate(names):
            stem = f"{city}_{seq}_{frame}"
            seed = i if split == "train" else 100 + i
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image_of(seed))
            ids = label_ids(i)
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            expected = table[ids]
            if split == "train" and city == "bremen":  # the train ids file wins; here it differs from the table's
                expected = np.where(ids % 7 == 0, 255, ids % 19).astype(np.uint8)
                write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", expected)
            written[split].append((stem, expected))
    # Cityscapes ships more files beside them; they must not be read as samples.
    write_png(root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_color.png", image_of(99))
    (root / "leftImg8bit" / "train" / "README").write_text("not a city\n")
    return written


@pytest.fixture()
def cityscapes(tmp_path):
    root = tmp_path / "cityscapes"
    return root, make_cityscapes(root)


def test_label_ids_map_to_the_19_train_ids_and_train_id_files_are_used_as_they_are(cityscapes):
    root, written = cityscapes
    train = open_dataset(f"cityscapes:{root}", "train")
    assert train.label_names == NAMES and train.num_classes == 19
    assert len(train) == 3 and len(open_dataset(f"cityscapes:{root}", "val")) == 1
    for index, (stem, expected) in enumerate(written["train"]):
        image, mask = train.load(index)
        assert stem in train.describe_sample(index)
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(image, image_of(index)[..., ::-1])  # written BGR by OpenCV, read RGB
    # Row 0 of the first frame: label id k in column k, mapped by the table; unmapped ids and 255 ignored.
    _, mask = train.load(0)
    for label_id in range(34):
        assert mask[0, label_id] == OFFICIAL.get(label_id, 255), label_id
    assert mask[0, 34] == 255


def test_iteration_and_the_data_check_read_the_same_samples(cityscapes):
    root, written = cityscapes
    val = open_dataset(f"cityscapes:{root}", "val")
    val.check()
    [(image, mask)] = list(val)
    np.testing.assert_array_equal(mask, written["val"][0][1])
    assert image.shape == (H, W, 3) and image.dtype == np.uint8


def test_an_image_without_its_label_names_both(cityscapes):
    root, _ = cityscapes
    image = root / "leftImg8bit" / "train" / "bremen" / "bremen_000001_000019_leftImg8bit.png"
    write_png(image, image_of(5))
    with pytest.raises(DatasetError, match=r"bremen_000001_000019_gtFine_labelIds\.png.*bremen_000001_000019_leftImg8bit\.png"):
        open_dataset(f"cityscapes:{root}", "train")


def test_a_label_of_another_size_and_an_unknown_label_id_name_the_file(cityscapes):
    root, _ = cityscapes
    label = root / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png"
    write_png(label, np.zeros((H // 2, W), np.uint8))
    train = open_dataset(f"cityscapes:{root}", "train")
    with pytest.raises(DatasetError, match=r"differs.*aachen_000001_000019_gtFine_labelIds\.png"):
        train.load(1)
    with pytest.raises(DatasetError, match=r"aachen_000001_000019"):
        train.check()
    write_png(label, np.full((H, W), 40, np.uint8))
    with pytest.raises(DatasetError, match=r"label id 40 is not a Cityscapes label id.*aachen_000001_000019_gtFine_labelIds"):
        train.load(1)
    trainids = root / "gtFine" / "train" / "bremen" / "bremen_000000_000019_gtFine_labelTrainIds.png"
    write_png(trainids, np.full((H, W), 19, np.uint8))
    with pytest.raises(DatasetError, match=r"label 19 outside \[0, 19\).*bremen_000000_000019_gtFine_labelTrainIds\.png"):
        train.load(2)


@pytest.mark.parametrize("layout, says", [("nothing", "Cityscapes folder not found"), ("no gtFine", "gtFine"),
                                          ("empty", "empty")])  # fmt: skip
def test_a_tree_that_is_not_cityscapes_is_named(tmp_path, layout, says):
    root = tmp_path / "cs"
    if layout != "nothing":
        (root / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    if layout == "empty":
        (root / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match=says) as error:
        open_dataset(f"cityscapes:{root}", "train")
    assert str(root) in str(error.value)


def test_training_exits_2_naming_the_file_and_writes_nothing(cityscapes, tmp_path, capsys):
    from training import train as train_cli

    root, _ = cityscapes
    os.remove(root / "gtFine" / "train" / "aachen" / "aachen_000001_000019_gtFine_labelIds.png")
    out = tmp_path / "run"
    assert train_cli.main([*TINY_TRAIN, "--data", f"cityscapes:{root}", "--out", str(out)]) == 2
    assert "aachen_000001_000019_gtFine_labelIds.png" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.trains
def test_train_one_step_then_evaluate_on_cityscapes(cityscapes, train_then_evaluate, tmp_path):
    root, _ = cityscapes
    spec = f"cityscapes:{root}"
    result = train_then_evaluate(spec, tmp_path)
    assert result["images"] == 1 and list(result["per_class"]) == NAMES and result["data"] == spec
