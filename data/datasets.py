"""Segmentation datasets behind one `--data` spec string.

Specs (`open_dataset(spec, split)`):

- `synthetic` (default): the built-in procedural dataset (`data/synthetic.py`),
  21 classes, 2000 train / 200 val images of 256x256. `synthetic:colours`: the same
  images with the colour family as the class (5 classes; learnt in minutes, for `make demo`).
- `voc:PATH`: PASCAL VOC 2012 (`PATH` = `VOCdevkit/VOC2012`): `JPEGImages/*.jpg`,
  `SegmentationClass/*.png` (palette PNGs; the palette *indices* are the labels),
  `ImageSets/Segmentation/{train,val}.txt`.
- `sbd:PATH`: the Semantic Boundaries Dataset (`PATH` holds `dataset/`):
  `dataset/img/*.jpg`, `dataset/cls/*.mat` (struct `GTcls` with field
  `Segmentation`), `dataset/{train,val}.txt`.
- `trainaug:VOC_PATH,SBD_PATH`: the paper's train set: SBD train + val plus VOC
  train, minus every VOC val image (a VOC mask wins over an SBD one). Its `val`
  split is VOC val.
- `ade20k:PATH`: ADEChallengeData2016 (`PATH` holds it or is it):
  `images/{training,validation}/*.jpg`, `annotations/{training,validation}/*.png`.
  150 classes; label 0 ("other") becomes 255 (ignored) and k becomes k - 1.
- `folder:PATH`: `PATH/images/*` and `PATH/masks/*.png` matched by file stem. Splits:
  `PATH/train/` and `PATH/val/` with that layout when they exist, otherwise the
  same files for every split. Classes: `PATH/labels.txt` (one name per line) when
  present, otherwise max label + 1 over the split (255 ignored).
- `cityscapes:ROOT`: Cityscapes as unpacked (`data/cityscapes.py`):
  `leftImg8bit/{train,val}/<city>/*_leftImg8bit.png` with `gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`
  where present, else `*_gtFine_labelIds.png` mapped to the 19 train ids (other ids -> 255).
- `tfrecord:DIR[?dataset=NAME&train=PREFIX&val=PREFIX]`: DeepLab's TFRecord shards
  (`data/tfrecord.py`), `DIR/<prefix>-NNNNN-of-NNNNN.tfrecord` with DeepLab's feature keys. Classes:
  `dataset=pascal_voc_seg|cityscapes|ade20k` (DeepLab's 21, 19, 151), else `DIR/labels.txt`.

Every dataset yields `(image uint8 HxWx3 RGB, mask uint8 HxW)` in a fixed order and
has random access by index (`dataset.load(i)`), which the training pipeline uses to
make the data order a function of (seed, step). Problems raise `DatasetError`
naming the file or value.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import numpy as np

from data import synthetic
from ksac_runtime.images import ImageError, read_rgb
from zoo import labels

IGNORE_LABEL = 255
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

VOC_LABELS = list(labels.VOC_LABELS)  # every dataset's class names live in zoo/labels.py


class DatasetError(ValueError):
    """A dataset that cannot be read: the message names the file or value at fault."""


# ----------------------------------------------------------------------------- readers


def read_image(path: str) -> np.ndarray:
    """Reads an image file as uint8 RGB HxWx3 (`ksac_runtime.images.read_rgb`, as the runtime reads it);
    DatasetError if missing or undecodable."""
    try:
        return read_rgb(path)
    except (FileNotFoundError, ImageError) as error:
        raise DatasetError(str(error)) from None


def read_label_png(path: str) -> np.ndarray:
    """Reads a label PNG as uint8 HxW: palette indices for palette PNGs, values for grey ones.

    OpenCV would convert a palette PNG to colours, so PIL reads it.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DatasetError(f"mask file not found: {path}")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "I", "I;16"):
                raise DatasetError(f"mask {path} has mode {img.mode}; expected a palette or greyscale PNG of labels")
            mask = np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DatasetError(f"cannot decode mask (corrupt or not an image): {path}: {err}") from None
    if mask.max(initial=0) > 255:
        raise DatasetError(f"mask {path} holds label {int(mask.max())} > 255")
    return mask.astype(np.uint8)


def read_sbd_mat(path: str) -> np.ndarray:
    """Reads the `GTcls.Segmentation` mask of an SBD `.mat` file as uint8 HxW."""
    import scipy.io

    if not os.path.isfile(path):
        raise DatasetError(f"mask file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        mask = np.asarray(mat["GTcls"].Segmentation)
    except (KeyError, AttributeError) as err:
        raise DatasetError(f"{path} has no GTcls.Segmentation field ({err})") from None
    except Exception as err:  # scipy raises several types for a broken file
        raise DatasetError(f"cannot read .mat file {path}: {err}") from None
    if mask.ndim != 2 or mask.max(initial=0) > 255 or mask.min(initial=0) < 0:
        raise DatasetError(f"{path}: GTcls.Segmentation is not a 2-D mask of labels in [0, 255]")
    return mask.astype(np.uint8)


def read_list(path: str) -> list[str]:
    """The non-empty lines (ids) of a split list file."""
    if not os.path.isfile(path):
        raise DatasetError(f"split list not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


# ----------------------------------------------------------------------------- datasets


class SegmentationDataset:
    """A fixed, ordered list of (image, mask) samples with random access.

    Attributes: `name`, `spec`, `split`, `num_classes`, `label_names`, `ignore_label`.
    """

    ignore_label = IGNORE_LABEL

    def __init__(self, name: str, spec: str, split: str, label_names: Sequence[str]) -> None:
        self.name = name
        self.spec = spec
        self.split = split
        self.label_names = list(label_names)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def describe_sample(self, index: int) -> str:
        """The file(s) of sample `index`, for error messages."""
        return f"{self.name} {self.split} sample {index}"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index` as (image uint8 HxWx3 RGB, mask uint8 HxW), checked."""
        image, mask = self._load(index)
        return self.validate(image, mask, lambda: self.describe_sample(index))

    def validate(self, image: np.ndarray, mask: np.ndarray, where: Callable[[], str]) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) if the mask fits the image and holds only this dataset's labels (or 255), else
        DatasetError ending with `where()`, the sample's file(s)."""
        if image.shape[:2] != mask.shape:
            raise DatasetError(
                f"mask size {mask.shape[1]}x{mask.shape[0]} differs from image size "
                f"{image.shape[1]}x{image.shape[0]}: {where()}"
            )
        bad = (mask >= self.num_classes) & (mask != IGNORE_LABEL)
        if bad.any():
            raise DatasetError(f"label {int(mask[bad].max())} outside [0, {self.num_classes}) and not {IGNORE_LABEL}: {where()}")
        return image, mask

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self.load(i)

    def check(self, limit: int | None = None, workers: int = 4, shard: tuple[int, int] = (0, 1)) -> None:
        """Loads (and so validates) the first `limit` samples (all by default); raises DatasetError.

        `shard=(i, n)` checks only every n-th of them from the i-th: n processes with i = 0..n-1
        check each sample once between them.
        """
        count = len(self) if limit is None else min(limit, len(self))
        index, every = shard
        with ThreadPoolExecutor(workers) as pool:  # cv2 and PIL decode outside the GIL
            for _ in pool.map(self.load, range(index, count, every)):
                pass


class SyntheticDataset(SegmentationDataset):
    """The built-in procedural dataset; see `data/synthetic.py`. `colours=True`: the colour family is
    the class (5 classes instead of 21, `--data synthetic:colours`)."""

    def __init__(self, split: str, spec: str = "synthetic", colours: bool = False) -> None:
        super().__init__("synthetic", spec, split, synthetic.COLOUR_LABEL_NAMES if colours else synthetic.LABEL_NAMES)
        self._size = synthetic.SPLIT_SIZES[split]
        self._seed = synthetic.SPLIT_SEEDS[split]
        self._colours = colours

    def __len__(self) -> int:
        return self._size

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self._size:
            raise IndexError(index)
        image, mask = synthetic.generate(self._seed + index)
        return (image, synthetic.COLOUR_LABELS[mask]) if self._colours else (image, mask)

    def check(self, limit: int | None = None, workers: int = 4, shard: tuple[int, int] = (0, 1)) -> None:
        return None  # generated, always valid


class FileDataset(SegmentationDataset):
    """Samples given as (image path, mask path, mask reader) triples."""

    def __init__(
        self,
        name: str,
        spec: str,
        split: str,
        label_names: Sequence[str],
        samples: Sequence[tuple[str, str, Callable[[str], np.ndarray]]],
        label_map: np.ndarray | None = None,
    ) -> None:
        super().__init__(name, spec, split, label_names)
        if not samples:
            raise DatasetError(f"the {split} split of {spec} is empty")
        self.samples = list(samples)
        self.label_map = label_map  # uint8[256] lookup applied to raw masks

    def __len__(self) -> int:
        return len(self.samples)

    def describe_sample(self, index: int) -> str:
        image, mask, _ = self.samples[index]
        return f"image {image}, mask {mask}"

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path, reader = self.samples[index]
        image = read_image(image_path)
        mask = reader(mask_path)
        if self.label_map is not None:
            mask = self.label_map[mask]
        return image, mask


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise DatasetError(f"{what} folder not found: {path}")
    return path


def _existing(path: str, kind: str, list_file: str) -> str:
    if not os.path.isfile(path):
        raise DatasetError(f"{list_file} names {kind} {path}, which does not exist")
    return path


def _voc_samples(root: str, split: str) -> list[tuple[str, str, Callable]]:
    _require_dir(root, "VOC2012")
    list_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
    return [
        (
            _existing(os.path.join(root, "JPEGImages", i + ".jpg"), "image", list_file),
            _existing(os.path.join(root, "SegmentationClass", i + ".png"), "mask", list_file),
            read_label_png,
        )
        for i in read_list(list_file)
    ]


def _sbd_dir(root: str) -> str:
    _require_dir(root, "SBD")
    return os.path.join(root, "dataset") if os.path.isdir(os.path.join(root, "dataset")) else root


def _sbd_samples(root: str, split: str) -> list[tuple[str, str, Callable]]:
    base = _sbd_dir(root)
    list_file = os.path.join(base, f"{split}.txt")
    return [
        (
            _existing(os.path.join(base, "img", i + ".jpg"), "image", list_file),
            _existing(os.path.join(base, "cls", i + ".mat"), "mask", list_file),
            read_sbd_mat,
        )
        for i in read_list(list_file)
    ]


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _trainaug_samples(voc: str, sbd: str, split: str) -> list[tuple[str, str, Callable]]:
    if split == "val":
        return _voc_samples(voc, "val")
    voc_val = set(read_list(os.path.join(voc, "ImageSets", "Segmentation", "val.txt")))
    chosen: dict[str, tuple[str, str, Callable]] = {}
    for sample in _sbd_samples(sbd, "train") + _sbd_samples(sbd, "val"):
        chosen.setdefault(_stem(sample[0]), sample)
    for sample in _voc_samples(voc, "train"):
        chosen[_stem(sample[0])] = sample  # VOC's own (finer) mask wins
    return [chosen[k] for k in sorted(chosen) if k not in voc_val]


def _ade_samples(root: str, split: str) -> list[tuple[str, str, Callable]]:
    _require_dir(root, "ADE20K")
    if os.path.isdir(os.path.join(root, "ADEChallengeData2016")):
        root = os.path.join(root, "ADEChallengeData2016")
    sub = "training" if split == "train" else "validation"
    images = _require_dir(os.path.join(root, "images", sub), "ADE20K images")
    masks = _require_dir(os.path.join(root, "annotations", sub), "ADE20K annotations")
    samples = []
    for name in sorted(os.listdir(images)):
        if name.lower().endswith(".jpg"):
            mask = os.path.join(masks, _stem(name) + ".png")
            if not os.path.isfile(mask):
                raise DatasetError(f"no annotation {mask} for image {os.path.join(images, name)}")
            samples.append((os.path.join(images, name), mask, read_label_png))
    return samples


ADE20K_CLASSES = 150


def _ade_label_map() -> np.ndarray:
    # 0 = "other objects" is ignored; 1..150 become 0..149; anything above stays invalid (checked).
    lut = np.arange(256, dtype=np.int32) - 1
    lut[0] = IGNORE_LABEL
    lut[ADE20K_CLASSES + 1 :] = ADE20K_CLASSES  # out of range -> reported by the label check
    lut[IGNORE_LABEL] = IGNORE_LABEL
    return lut.astype(np.uint8)


def _folder_samples(root: str, split: str) -> tuple[str, list[tuple[str, str, Callable]]]:
    _require_dir(root, "dataset")
    base = os.path.join(root, split) if os.path.isdir(os.path.join(root, split)) else root
    images = _require_dir(os.path.join(base, "images"), "images")
    masks = _require_dir(os.path.join(base, "masks"), "masks")
    mask_by_stem = {_stem(n): os.path.join(masks, n) for n in sorted(os.listdir(masks)) if n.lower().endswith(".png")}
    samples = []
    for name in sorted(os.listdir(images)):
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        if _stem(name) not in mask_by_stem:
            raise DatasetError(f"no mask {os.path.join(masks, _stem(name) + '.png')} for image {os.path.join(images, name)}")
        samples.append((os.path.join(images, name), mask_by_stem[_stem(name)], read_label_png))
    return base, samples


def read_label_names(path: str) -> list[str]:
    """The class names of a `labels.txt` (one a line, blank lines skipped); at least 2."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) < 2:
        raise DatasetError(f"{path} must name at least 2 classes")
    return names


def _folder_label_names(root: str, samples: Sequence[tuple[str, str, Callable]]) -> list[str]:
    labels_txt = os.path.join(root, "labels.txt")
    if os.path.isfile(labels_txt):
        return read_label_names(labels_txt)
    top = 0
    for _, mask_path, reader in samples:
        mask = reader(mask_path)
        valid = mask[mask != IGNORE_LABEL]
        top = max(top, int(valid.max(initial=0)))
    return [f"class_{i}" for i in range(max(top + 1, 2))]


def open_dataset(spec: str | None, split: str) -> SegmentationDataset:
    """Opens the dataset named by `spec` (see the module docstring) at `split` ("train" or "val")."""
    spec = spec or "synthetic"
    _check_split(split)
    scheme, _, path = spec.partition(":")
    if scheme == "synthetic" and path in ("", "colours"):
        return SyntheticDataset(split, spec, colours=path == "colours")
    if scheme in ("voc", "sbd", "ade20k", "folder", "trainaug", "cityscapes", "tfrecord") and not path:
        raise DatasetError(f"--data {spec!r}: the {scheme} scheme needs a path, e.g. {scheme}:/data/...")
    if scheme == "voc":
        return FileDataset("voc", spec, split, VOC_LABELS, _voc_samples(path, split))
    if scheme == "sbd":
        return FileDataset("sbd", spec, split, VOC_LABELS, _sbd_samples(path, split))
    if scheme == "trainaug":
        parts = path.split(",")
        if len(parts) != 2 or not all(parts):
            raise DatasetError(f"--data {spec!r}: trainaug needs two paths, trainaug:VOC_PATH,SBD_PATH")
        return FileDataset("trainaug", spec, split, VOC_LABELS, _trainaug_samples(parts[0], parts[1], split))
    if scheme == "ade20k":
        names = list(labels.ADE20K_LABELS)
        return FileDataset("ade20k", spec, split, names, _ade_samples(path, split), label_map=_ade_label_map())
    if scheme == "folder":
        base, samples = _folder_samples(path, split)
        if not samples:
            raise DatasetError(f"the {split} split of {spec} is empty: no images in {os.path.join(base, 'images')}")
        return FileDataset("folder", spec, split, _folder_label_names(path, samples), samples)
    if scheme == "cityscapes":
        from data.cityscapes import open_cityscapes  # imports this module

        return open_cityscapes(spec, path, split)
    if scheme == "tfrecord":
        from data.tfrecord import open_tfrecord  # imports TensorFlow: only when asked for

        return open_tfrecord(spec, path, split)
    raise DatasetError(
        f"unknown --data scheme {scheme!r} in {spec!r}; valid: synthetic, synthetic:colours, voc:PATH, sbd:PATH, "
        "trainaug:VOC_PATH,SBD_PATH, ade20k:PATH, folder:PATH, cityscapes:ROOT, tfrecord:DIR"
    )
