"""DeepLab's TFRecord shards as a dataset: `--data tfrecord:DIR[?dataset=NAME&train=PREFIX&val=PREFIX]`.

DeepLab's `build_voc2012_data.py`, `build_cityscapes_data.py` and `build_ade20k_data.py` write a split
as `DIR/<prefix>-NNNNN-of-NNNNN.tfrecord`, one `tf.train.Example` per image with the keys
`image/encoded` (JPEG or PNG), `image/format`, `image/height`, `image/width`, `image/filename`,
`image/segmentation/class/encoded` (a single-channel PNG of class ids) and
`image/segmentation/class/format`. The image, the label and the file name are read; the image and
the label are decoded whatever their format says.

Which shards: our `train` split reads the `train-*` shards, else DeepLab's Cityscapes name
`train_fine-*` (`val`: `val-*`, else `val_fine-*`); `?train=PREFIX` / `?val=PREFIX` pick another
(`train_aug`, `trainval`, ...). Every shard of the prefix must be there (the `-of-NNNNN` count).

Classes: `?dataset=pascal_voc_seg` (21: VOC's names), `cityscapes` (19: the train ids), `ade20k`
(DeepLab's 151: index 0, "other", is DeepLab's ignore label for ADE20K and becomes 255; the others keep
their index, so a DeepLab ADE20K checkpoint reads them as it was trained; `ade20k:PATH` instead
drops the 0 and counts 150 classes); else `DIR/labels.txt`, one name per line. `dataset=` wins over a
`labels.txt`.

Cost of random access (the training pipeline reads samples by position): opening the split walks
every record's 12-byte header once (one seek and read per record, the header's CRC checked) and keeps
each record's offset, 16 bytes a record; reading sample i is one seek and read of its record, then
TensorFlow's parse and decode ops. Reading in order (`check`, which training runs first unless
`--no-data-check`, and iteration: int8 calibration, parity images) streams each shard through tf.data
(TFRecordDataset, parse_single_example, decode_image in a parallel map), which also checks every
record's data CRC; a random read checks it only for a record that fails to parse or decode, so a
damaged record that still decodes is found by the check alone.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from data.cityscapes import CITYSCAPES_LABELS
from data.datasets import IGNORE_LABEL, VOC_LABELS, DatasetError, SegmentationDataset, read_label_names
from zoo.labels import DEEPLAB_ADE20K_LABELS

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/segmentation/class/encoded"
FILENAME_KEY = "image/filename"
FEATURES = {key: tf.io.FixedLenFeature((), tf.string, default_value="") for key in (IMAGE_KEY, LABEL_KEY, FILENAME_KEY)}
SHARD_NAME = re.compile(r"(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tfrecord")
# Our split -> the shard prefixes it reads when the spec names none, in order of preference.
DEFAULT_PREFIXES = {"train": ("train", "train_fine"), "val": ("val", "val_fine")}
OPTIONS = ("dataset", "train", "val")
HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of the length; then data, data CRC


def _ignore_zero() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    table[0] = IGNORE_LABEL
    return table


# DeepLab's dataset names -> (class names, label table applied to the stored labels or None).
DEEPLAB_DATASETS: dict[str, tuple[list[str], np.ndarray | None]] = {
    "pascal_voc_seg": (VOC_LABELS, None),
    "cityscapes": (CITYSCAPES_LABELS, None),
    "ade20k": (list(DEEPLAB_ADE20K_LABELS), _ignore_zero()),  # DeepLab's 151: "other" (0, ignored) + ADE20K's 150
}


# ----------------------------------------------------------------------------- the TFRecord framing
# Written here because TensorFlow reads TFRecord files only in order (TFRecordDataset has no random access):
# the record index needs the framing, [length u64][masked CRC-32C of the length][data][masked CRC-32C of data].


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (for the 8-byte length headers: pure Python is slow on records)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def index_shard(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, lengths) of the records' data in the TFRecord file `path`, int64 each.

    Reads only the 12-byte headers. DatasetError naming the file for a header that is not a TFRecord's
    (wrong file, damaged) or a record that runs past the end of the file (a partial copy or download).
    """
    size = os.path.getsize(path)
    offsets, lengths = [], []
    with open(path, "rb") as f:
        position = 0
        while position < size:
            record = len(offsets)
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                raise DatasetError(f"TFRecord shard {path} is truncated: it ends inside the header of record {record} "
                                   f"(byte {position} of {size}); a partial copy or download?")  # fmt: skip
            length, length_crc = HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DatasetError(f"{path} is not a TFRecord file, or is damaged: the header of record {record} "
                                   f"(byte {position}) fails its checksum")  # fmt: skip
            end = position + HEADER.size + length + 4
            if end > size:
                raise DatasetError(f"TFRecord shard {path} is truncated: record {record} needs bytes up to {end}, "
                                   f"the file has {size}; a partial copy or download?")  # fmt: skip
            offsets.append(position + HEADER.size)
            lengths.append(length)
            position = end
            f.seek(position)
    return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


def split_shards(folder: str, prefixes: tuple[str, ...], split: str) -> list[str]:
    """The shard files of the first of `prefixes` that `folder` holds, in shard order; DatasetError
    saying which prefixes it holds when none, and naming a missing shard."""
    found: dict[str, list[tuple[int, int, str]]] = {}
    for name in sorted(os.listdir(folder)):
        match = SHARD_NAME.fullmatch(name)
        if match:
            found.setdefault(match["prefix"], []).append((int(match["index"]), int(match["total"]), os.path.join(folder, name)))
    prefix = next((p for p in prefixes if p in found), None)
    if prefix is None:
        wanted = " or ".join(f"{p}-NNNNN-of-NNNNN.tfrecord" for p in prefixes)
        held = ", ".join(sorted(found)) if found else "none"
        raise DatasetError(f"no {wanted} shards for the {split} split in {folder}; the split prefixes of its shards: "
                           f"{held}. Pick one with tfrecord:{folder}?{split}=PREFIX")  # fmt: skip
    shards = sorted(found[prefix])
    totals = sorted({total for _, total, _ in shards})
    if len(totals) > 1:
        counts = ", ".join(f"-of-{total:05d}" for total in totals)
        raise DatasetError(f"the {prefix} shards in {folder} disagree on their count ({counts})")
    total = totals[0]
    first = 0 if shards[0][0] == 0 else 1  # DeepLab numbers from 0; some forks from 1
    expected = set(range(first, first + total))
    missing = sorted(expected - {index for index, _, _ in shards})
    if missing or len(shards) != total:
        names = ", ".join(f"{prefix}-{i:05d}-of-{total:05d}.tfrecord" for i in missing) or "(numbered out of range)"
        raise DatasetError(f"{folder} holds {len(shards)} of the {total} {prefix} shards; missing: {names}")
    return [path for _, _, path in shards]


# ----------------------------------------------------------------------------- decoding (TensorFlow ops)


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """The DeepLab keys this reader uses, from one serialized `tf.train.Example` (missing keys: b"")."""
    return tf.io.parse_single_example(serialized, FEATURES)


def decode(example: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(uint8 [h, w, 3] RGB image, uint8 [h, w, c] label) of a parsed example, whatever the formats."""
    image = tf.io.decode_image(example[IMAGE_KEY], channels=3, expand_animations=False)
    label = tf.io.decode_image(example[LABEL_KEY], expand_animations=False)
    return image, label


def _parse_and_decode(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    example = parse(serialized)
    return (*decode(example), example[FILENAME_KEY])


def _first_line(error: tf.errors.OpError) -> str:
    """The reason in a TensorFlow error, without the function-node prefix and the op suffix it carries."""
    line = (error.message or str(error)).strip().splitlines()[0]
    return re.sub(r"\s*\[Op:\w+.*$", "", re.sub(r"^\{\{[^}]*\}\}\s*", "", line))


# ----------------------------------------------------------------------------- the dataset


class TFRecordShards(SegmentationDataset):
    """The records of a split's shards, in shard order, with random access by an offset index."""

    def __init__(
        self, spec: str, split: str, shards: list[str], label_names: list[str], label_map: np.ndarray | None = None
    ) -> None:
        super().__init__("tfrecord", spec, split, label_names)
        self.shards = shards
        self.label_map = label_map  # uint8[256] applied to the stored labels
        indexed = [index_shard(path) for path in shards]
        self._counts = np.asarray([len(offsets) for offsets, _ in indexed], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)
        self._offsets = np.concatenate([offsets for offsets, _ in indexed]) if indexed else np.zeros(0, np.int64)
        self._lengths = np.concatenate([lengths for _, lengths in indexed]) if indexed else np.zeros(0, np.int64)
        if not len(self):
            raise DatasetError(f"the {split} split of {spec} is empty: its shards hold no records ({', '.join(shards)})")

    def __len__(self) -> int:
        return int(self._starts[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        """(shard, record number in the shard) of sample `index`."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return shard, index - int(self._starts[shard])

    def _where(self, shard: int, record: int, filename: bytes | str = b"") -> str:
        name = filename.decode("utf-8", "replace") if isinstance(filename, bytes) else filename
        return f"record {record}{f' ({name})' if name else ''} of TFRecord shard {self.shards[shard]}"

    def describe_sample(self, index: int) -> str:
        return self._where(*self._locate(index))

    def _finish(self, image: np.ndarray, label: np.ndarray, where: Callable[[], str]) -> tuple[np.ndarray, np.ndarray]:
        if label.shape[-1] != 1:
            raise DatasetError(f"the label is a {label.shape[-1]}-channel image; DeepLab's labels are single-channel "
                               f"PNGs of class ids (VOC's palette PNGs go through DeepLab's remove_gt_colormap.py): "
                               f"{where()}")  # fmt: skip
        mask = label[..., 0]
        if self.label_map is not None:
            mask = self.label_map[mask]
        return self.validate(image, mask, where)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample `index` as (image uint8 HxWx3 RGB, mask uint8 HxW), checked: one read of its record."""
        shard, record = self._locate(index)
        path, length = self.shards[shard], int(self._lengths[index])
        with open(path, "rb") as f:
            f.seek(int(self._offsets[index]))
            data = f.read(length + 4)  # the record's data and its CRC
        if len(data) != length + 4:
            raise DatasetError(f"TFRecord shard {path} ends inside record {record}: it changed since the dataset was opened")
        filename = b""
        try:
            example = parse(tf.constant(data[:length]))
            filename = example[FILENAME_KEY].numpy()
            for key in (IMAGE_KEY, LABEL_KEY):
                if not example[key].numpy():
                    raise DatasetError(f"no {key} in {self._where(shard, record, filename)}")
            image, label = decode(example)
        except (tf.errors.OpError, DatasetError) as error:
            # Only a record that fails to read pays for the checksum (pure Python: about 6 ms per 100 kB).
            if masked_crc32c(data[:length]) != struct.unpack("<I", data[length:])[0]:
                raise DatasetError(f"record {record} of TFRecord shard {path} is damaged: its data fails its checksum; "
                                   "a partial or corrupted copy?") from None  # fmt: skip
            if isinstance(error, DatasetError):
                raise
            raise DatasetError(f"not a tf.train.Example with a decodable image and label ({_first_line(error)}): "
                               f"{self._where(shard, record, filename)}") from None  # fmt: skip
        return self._finish(image.numpy(), label.numpy(), functools.partial(self._where, shard, record, filename))

    def _stream(self, first: int, every: int, stop: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(index, image, mask) for index = first, first + every, ... below `stop`, checked, decoded by
        tf.data shard after shard (each shard's records in a parallel map)."""
        for shard, path in enumerate(self.shards):
            start, end = int(self._starts[shard]), min(int(self._starts[shard + 1]), stop)
            index = first if first >= start else first + -(-(start - first) // every) * every
            count = len(range(index, end, every))
            if not count:
                continue
            records = tf.data.TFRecordDataset(path).skip(index - start)
            records = records.shard(every, 0) if every > 1 else records
            decoded = records.take(count).map(_parse_and_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            try:
                for image, label, filename in decoded.prefetch(2).as_numpy_iterator():
                    yield (index, *self._finish(image, label, functools.partial(self._where, shard, index - start, filename)))
                    index += every
            except tf.errors.DataLossError as error:
                raise DatasetError(f"TFRecord shard {path} is damaged: a record at or after record {index - start} fails its "
                                   f"checksum ({_first_line(error)}); a partial or corrupted copy?") from None  # fmt: skip
            except tf.errors.OpError as error:
                self.load(index)  # raises the precise reason of the failing record
                raise DatasetError(f"cannot read {self._where(shard, index - start)}: {_first_line(error)}") from None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for _, image, mask in self._stream(0, 1, len(self)):
            yield image, mask

    def check(self, limit: int | None = None, workers: int = 4, shard: tuple[int, int] = (0, 1)) -> None:
        """Decodes (and so validates) the first `limit` samples (all by default) through tf.data, which
        sizes its own parallelism (`workers` is unused); `shard=(i, n)`: every n-th sample from the i-th."""
        count = len(self) if limit is None else min(limit, len(self))
        for _ in self._stream(shard[0], shard[1], count):
            pass


def parse_spec(spec: str, path: str) -> tuple[str, dict[str, str]]:
    """(DIR, options) of the `DIR[?key=value&...]` part of a tfrecord spec."""
    folder, _, query = path.partition("?")
    options: dict[str, str] = {}
    for part in query.split("&") if query else ():
        key, sep, value = part.partition("=")
        if key not in OPTIONS or not sep or not value:
            raise DatasetError(f"--data {spec!r}: bad option {part!r}; valid: dataset={'|'.join(DEEPLAB_DATASETS)}, "
                               "train=PREFIX, val=PREFIX (joined with &)")  # fmt: skip
        options[key] = value
    if "dataset" in options and options["dataset"] not in DEEPLAB_DATASETS:
        valid = ", ".join(DEEPLAB_DATASETS)
        raise DatasetError(f"--data {spec!r}: unknown DeepLab dataset {options['dataset']!r}; valid: {valid}")
    return folder, options


def open_tfrecord(spec: str, path: str, split: str) -> TFRecordShards:
    """`--data tfrecord:DIR[?...]` at `split` (see the module docstring)."""
    folder, options = parse_spec(spec, path)
    if not os.path.isdir(folder):
        raise DatasetError(f"TFRecord folder not found: {folder}")
    labels_txt = os.path.join(folder, "labels.txt")
    if "dataset" in options:
        names, label_map = DEEPLAB_DATASETS[options["dataset"]]
    elif os.path.isfile(labels_txt):
        names, label_map = read_label_names(labels_txt), None
    else:
        raise DatasetError(f"--data {spec!r}: no class names: put a labels.txt (one class name per line) in {folder}, "
                           f"or name DeepLab's dataset: tfrecord:{folder}?dataset={'|'.join(DEEPLAB_DATASETS)}")  # fmt: skip
    prefixes = (options[split],) if split in options else DEFAULT_PREFIXES[split]
    return TFRecordShards(spec, split, split_shards(folder, prefixes, split), names, label_map)
