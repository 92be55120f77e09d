"""Dataset readers on small fixtures in their real on-disk layouts, and their errors."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

from data.datasets import DatasetError, open_dataset
from evaluation.predict import voc_palette
from data import synthetic


def write_jpg(path, h=24, w=32, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.RandomState(seed).randint(0, 255, (h, w, 3), np.uint8)
    cv2.imwrite(str(path), img)


def write_palette_png(path, mask):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    img.save(path)


def write_grey_png(path, mask):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)


def label_mask(value, h=24, w=32):
    mask = np.zeros((h, w), np.uint8)
    mask[4:12, 6:20] = value
    mask[0, :] = 255  # VOC's "void" border
    return mask


def make_voc(root, train=("a", "b"), val=("c",)):
    for i, name in enumerate(train + val):
        write_jpg(root / "JPEGImages" / f"{name}.jpg", seed=i)
        write_palette_png(root / "SegmentationClass" / f"{name}.png", label_mask(i + 1))
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "train.txt").write_text("".join(n + "\n" for n in train))
    (lists / "val.txt").write_text("".join(n + "\n" for n in val))
    return root


def make_sbd(root, train=("c", "d"), val=("e",)):
    base = root / "dataset"
    for i, name in enumerate(train + val):
        write_jpg(base / "img" / f"{name}.jpg", seed=10 + i)
        os.makedirs(base / "cls", exist_ok=True)
        seg = label_mask(10 + i).astype(np.uint8)
        seg[seg == 255] = 0  # SBD has no void label
        scipy.io.savemat(str(base / "cls" / f"{name}.mat"), {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.array([10 + i])}})
    (base / "train.txt").write_text("".join(n + "\n" for n in train))
    (base / "val.txt").write_text("".join(n + "\n" for n in val))
    return root


def test_synthetic_is_deterministic_and_multiscale():
    ds = open_dataset("synthetic", "train")
    assert (ds.name, ds.num_classes, len(ds), ds.ignore_label) == ("synthetic", 21, 2000, 255)
    a, b = ds.load(3), ds.load(3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].dtype == np.uint8 and a[0].shape == (256, 256, 3) and a[1].shape == (256, 256)
    val = open_dataset(None, "val")
    assert len(val) == 200 and not np.array_equal(val.load(3)[0], a[0])
    # Object areas span well over 10x in side length (100x in area) across a few images.
    areas = []
    for i in range(30):
        _, mask = ds.load(i)
        for c in np.unique(mask[mask > 0]):
            areas.append(int((mask == c).sum()))
    assert max(areas) / min(areas) > 100
    assert len(synthetic.LABEL_NAMES) == 21 and synthetic.LABEL_NAMES[0] == "background"


def test_synthetic_class_is_colour_family_and_shape_with_same_coloured_clutter():
    import cv2

    names = synthetic.LABEL_NAMES
    assert names[1:6] == [f"red_{s}" for s in synthetic.SHAPES] and names[-1] == "blue_cross"
    centres = list(synthetic.FAMILIES.values())

    def hue_distance(hue, centre):
        return abs((hue - centre + 180) % 360 - 180)

    ds = open_dataset("synthetic", "val")
    checked, saturated_background = 0, 0
    for i in range(10):
        image, mask = ds.load(i)
        hsv = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2HSV)
        for c in np.unique(mask[mask > 0]):
            inside = (mask == c) & (hsv[..., 1] > 0.4)  # the object's saturated pixels (noise, blur aside)
            if inside.sum() < 50:
                continue
            family = (c - 1) // len(synthetic.SHAPES)
            hue = np.median(hsv[..., 0][inside])
            # The median hue is its family's (within the jitter plus noise), no other family's.
            assert hue_distance(hue, centres[family]) < synthetic.HUE_JITTER + 10, (i, names[c], hue)
            checked += 1
        # Clutter in the objects' colours is labelled background: colour alone does not segment.
        saturated_background += int(((mask == 0) & (hsv[..., 1] > 0.6) & (hsv[..., 2] > 0.4)).sum())
    assert checked > 20 and saturated_background > 1000


def test_voc_reads_palette_indices(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    ds = open_dataset(f"voc:{root}", "train")
    assert ds.num_classes == 21 and ds.label_names[15] == "person" and len(ds) == 2
    samples = list(ds)
    image, mask = samples[1]
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 2, 255}  # the indices, not palette colours
    assert len(open_dataset(f"voc:{root}", "val")) == 1


def test_sbd_reads_mat_files(tmp_path):
    root = make_sbd(tmp_path / "benchmark_RELEASE")
    ds = open_dataset(f"sbd:{root}", "train")
    assert len(ds) == 2
    _, mask = ds.load(0)
    assert mask.shape == (24, 32) and set(np.unique(mask)) == {0, 10}


def test_trainaug_merges_and_excludes_voc_val(tmp_path):
    voc = make_voc(tmp_path / "VOC2012")
    sbd = make_sbd(tmp_path / "SBD")
    train = open_dataset(f"trainaug:{voc},{sbd}", "train")
    stems = sorted(os.path.splitext(os.path.basename(s[0]))[0] for s in train.samples)
    assert stems == ["a", "b", "d", "e"]  # SBD train+val + VOC train, minus VOC val "c"
    assert len(open_dataset(f"trainaug:{voc},{sbd}", "val")) == 1


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    mask = np.zeros((24, 32), np.uint8)
    mask[:, 10:20] = 1
    mask[:, 20:] = 150
    for sub, name in (("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")):
        write_jpg(root / "images" / sub / f"{name}.jpg")
        write_grey_png(root / "annotations" / sub / f"{name}.png", mask)
    ds = open_dataset(f"ade20k:{tmp_path}", "train")
    assert ds.num_classes == 150
    _, out = ds.load(0)
    assert out[0, 0] == 255 and out[0, 15] == 0 and out[0, 25] == 149
    assert len(open_dataset(f"ade20k:{root}", "val")) == 1


def test_folder_matches_by_stem_and_counts_classes(tmp_path):
    for i, stem in enumerate(("x1", "x2")):
        write_jpg(tmp_path / "images" / f"{stem}.jpg", seed=i)
        write_grey_png(tmp_path / "masks" / f"{stem}.png", label_mask(3 + i))
    ds = open_dataset(f"folder:{tmp_path}", "train")
    assert ds.num_classes == 5 and len(ds) == 2  # max label 4 + 1
    (tmp_path / "labels.txt").write_text("bg\na\nb\nc\nd\ne\n")
    assert open_dataset(f"folder:{tmp_path}", "val").num_classes == 6


@pytest.mark.parametrize("spec", ["nosuch:/x", "voc", "trainaug:/only_one"])
def test_bad_specs(spec):
    with pytest.raises(DatasetError, match="nosuch|needs|two paths"):
        open_dataset(spec, "train")


def test_missing_path_is_named(tmp_path):
    with pytest.raises(DatasetError, match="missing_dir"):
        open_dataset(f"voc:{tmp_path / 'missing_dir'}", "train")


def test_list_file_naming_missing_image(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nghost\n")
    with pytest.raises(DatasetError, match="ghost.jpg"):
        open_dataset(f"voc:{root}", "train")


def test_empty_split(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty"):
        open_dataset(f"voc:{root}", "val")


def test_corrupt_image_size_mismatch_and_bad_label_name_the_file(tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    (root / "JPEGImages" / "a.jpg").write_bytes(b"not a jpeg")
    write_palette_png(root / "SegmentationClass" / "b.png", np.zeros((10, 10), np.uint8))
    ds = open_dataset(f"voc:{root}", "train")
    with pytest.raises(DatasetError, match="a.jpg"):
        ds.load(0)
    with pytest.raises(DatasetError, match=r"differs.*b\.jpg"):
        ds.load(1)
    write_palette_png(root / "SegmentationClass" / "b.png", label_mask(42))
    with pytest.raises(DatasetError, match=r"label 42.*b\.png"):
        ds.load(1)


def test_a_sharded_check_visits_every_sample_once_across_the_shards(tmp_path, monkeypatch):
    """What each worker of a multi-worker run checks: every n-th sample, so no worker decodes the whole dataset."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(7):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "masks" / f"{i}.png"), np.zeros((8, 8), np.uint8))
    dataset = open_dataset(f"folder:{tmp_path}", "train")
    visited = []
    monkeypatch.setattr(dataset, "load", visited.append)
    shards = []
    for rank in range(3):
        visited.clear()
        dataset.check(shard=(rank, 3))
        shards.append(sorted(visited))
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]


def test_synthetic_colours_is_the_same_images_with_the_colour_family_as_the_class():
    shapes, colours = open_dataset("synthetic", "val"), open_dataset("synthetic:colours", "val")
    assert colours.label_names == ["background", "red", "yellow", "green", "blue"] and len(colours) == len(shapes)
    for index in range(3):
        (image, mask), (same_image, colour_mask) = shapes.load(index), colours.load(index)
        np.testing.assert_array_equal(image, same_image)
        expected = np.where(mask == 0, 0, (mask.astype(int) - 1) // len(synthetic.SHAPES) + 1)
        np.testing.assert_array_equal(colour_mask, expected)
    with pytest.raises(DatasetError, match="synthetic:shapes"):
        open_dataset("synthetic:shapes", "val")
