"""`--data tfrecord:DIR` on DeepLab-style shards written here with DeepLab's exact feature keys (what its
build_*_data.py scripts write): decoded values, class names, split prefixes, random access against the
tf.data stream, a tiny training run and evaluation, and the damaged shards that must be named."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data.datasets import DatasetError, open_dataset

H, W = 64, 128
NAMES = ["background", "road", "car", "person"]
TINY_TRAIN = ["--model", "mobilenetv2_ksac", "--width", "0.35", "--head-filters", "16", "--crop-size", "65",
              "--batch-size", "2", "--steps", "1"]  # fmt: skip


def image_of(seed, h=H, w=W):
    """Flat 16x16 blocks (JPEG's colour blocks), so that the JPEG keeps the picture close."""
    blocks = np.random.RandomState(seed).randint(0, 256, (h // 16, w // 16, 3), np.uint8)
    return np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)


def label_of(seed, top=len(NAMES), h=H, w=W):
    label = np.random.RandomState(seed).randint(0, top, (h, w)).astype(np.uint8)
    label[:, :3] = 255  # DeepLab's ignore label
    return label


def deeplab_example(image, label, filename, image_format="jpeg"):
    """A tf.train.Example as DeepLab's build_data.image_seg_to_tfexample writes it (RGB image)."""
    encoded = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", image[..., ::-1])[1].tobytes()
    label_png = cv2.imencode(".png", label)[1].tobytes()

    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def i(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {
        "image/encoded": b(encoded), "image/filename": b(filename.encode()), "image/format": b(image_format.encode()),
        "image/height": i(image.shape[0]), "image/width": i(image.shape[1]), "image/channels": i(3),
        "image/segmentation/class/encoded": b(label_png), "image/segmentation/class/format": b(b"png"),
    }  # fmt: skip
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(), encoded


def write_shards(folder, prefix, shards):
    """`shards`: per shard, a list of (image, label, filename); returns the encoded images in read order."""
    os.makedirs(folder, exist_ok=True)
    encoded = []
    for index, records in enumerate(shards):
        with tf.io.TFRecordWriter(str(folder / f"{prefix}-{index:05d}-of-{len(shards):05d}.tfrecord")) as writer:
            for image, label, filename in records:
                serialized, image_bytes = deeplab_example(image, label, filename)
                writer.write(serialized)
                encoded.append(image_bytes)
    return encoded


def make_shards(folder, labels_txt=True, train="train", val="val"):
    """2 train shards (2 + 1 records), 1 val shard (1 record), JPEG images, PNG labels.

    Returns {split: [(label, encoded image)]} in the order the dataset reads them.
    """
    samples = {"train": [[(image_of(0), label_of(0), "2007_000032"), (image_of(1), label_of(1), "2007_000039")],
                         [(image_of(2), label_of(2), "2007_000063")]],
               "val": [[(image_of(3), label_of(3), "2007_000033")]]}  # fmt: skip
    written = {}
    for split, prefix in (("train", train), ("val", val)):
        encoded = write_shards(folder, prefix, samples[split])
        written[split] = [(label, jpg) for (_, label, _), jpg in zip([r for s in samples[split] for r in s], encoded)]
    if labels_txt:
        (folder / "labels.txt").write_text("".join(n + "\n" for n in NAMES))
    return written


@pytest.fixture()
def shards(tmp_path):
    folder = tmp_path / "tfrecord"
    return folder, make_shards(folder)


def test_records_decode_to_the_labels_written_in_shard_order(shards):
    folder, written = shards
    train = open_dataset(f"tfrecord:{folder}", "train")
    assert len(train) == 3 and train.label_names == NAMES and train.num_classes == 4
    assert len(open_dataset(f"tfrecord:{folder}", "val")) == 1
    for index, (label, jpg) in enumerate(written["train"]):
        image, mask = train.load(index)
        np.testing.assert_array_equal(mask, label)  # PNG: exact
        np.testing.assert_array_equal(image, tf.io.decode_jpeg(jpg, channels=3).numpy())  # TensorFlow's JPEG decoder
        assert np.abs(image.astype(int) - image_of(index)).mean() < 8  # the picture written, in RGB order
    assert train.describe_sample(2).startswith("record 0 of TFRecord shard ")
    assert train.describe_sample(2).endswith("train-00001-of-00002.tfrecord")


def test_the_tf_data_stream_reads_what_random_access_reads(shards):
    folder, _ = shards
    train = open_dataset(f"tfrecord:{folder}", "train")
    streamed = list(train)
    assert len(streamed) == 3
    for index, (image, mask) in enumerate(streamed):
        again = train.load(index)
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(mask, again[1])
    train.check()


def test_deeplab_dataset_names_give_the_classes_and_ade20k_ignores_its_zero(tmp_path):
    folder = tmp_path / "ade"
    label = label_of(7, top=151)
    label[0, 3:6] = (0, 1, 150)
    write_shards(folder, "train", [[(image_of(7), label, "ADE_train_00000001")]])
    with pytest.raises(DatasetError, match=r"labels\.txt.*dataset=pascal_voc_seg\|cityscapes\|ade20k"):
        open_dataset(f"tfrecord:{folder}", "train")
    ade = open_dataset(f"tfrecord:{folder}?dataset=ade20k", "train")
    assert ade.num_classes == 151 and ade.label_names[:2] == ["other", "wall"]
    _, mask = ade.load(0)
    assert list(mask[0, 3:6]) == [255, 1, 150]
    np.testing.assert_array_equal(mask, np.where(label == 0, 255, label))
    assert open_dataset(f"tfrecord:{folder}?dataset=cityscapes", "train").label_names[:2] == ["road", "sidewalk"]
    voc = open_dataset(f"tfrecord:{folder}?dataset=pascal_voc_seg", "train")
    assert voc.num_classes == 21
    with pytest.raises(DatasetError, match=r"label 150 outside \[0, 21\).*ADE_train_00000001.*train-00000-of-00001"):
        voc.load(0)
    for spec, says in ((f"tfrecord:{folder}?dataset=coco", "unknown DeepLab dataset 'coco'"),
                       (f"tfrecord:{folder}?size=3", "bad option 'size=3'")):  # fmt: skip
        with pytest.raises(DatasetError, match=says):
            open_dataset(spec, "train")


def test_split_prefixes_deeplab_names_and_a_missing_split_say_what_the_folder_holds(tmp_path):
    cityscapes = tmp_path / "cs"
    make_shards(cityscapes, train="train_fine", val="val_fine")  # DeepLab's Cityscapes names
    assert len(open_dataset(f"tfrecord:{cityscapes}", "train")) == 3
    assert len(open_dataset(f"tfrecord:{cityscapes}", "val")) == 1
    voc = tmp_path / "voc"
    make_shards(voc, train="train_aug")
    holds = r"no train-NNNNN-of-NNNNN\.tfrecord.*prefixes of its shards: train_aug, val.*\?train=PREFIX"
    with pytest.raises(DatasetError, match=holds):
        open_dataset(f"tfrecord:{voc}", "train")
    assert len(open_dataset(f"tfrecord:{voc}?train=train_aug", "train")) == 3
    assert len(open_dataset(f"tfrecord:{voc}?train=train_aug&val=train_aug", "val")) == 3
    os.remove(voc / "train_aug-00001-of-00002.tfrecord")
    with pytest.raises(DatasetError, match=r"1 of the 2 train_aug shards; missing: train_aug-00001-of-00002\.tfrecord"):
        open_dataset(f"tfrecord:{voc}?train=train_aug", "train")
    with pytest.raises(DatasetError, match="TFRecord folder not found"):
        open_dataset(f"tfrecord:{tmp_path / 'nowhere'}?dataset=cityscapes", "train")


def test_a_truncated_or_foreign_shard_is_named_when_opened(shards):
    folder, _ = shards
    shard = folder / "train-00001-of-00002.tfrecord"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])  # a partial copy
    with pytest.raises(DatasetError, match=r"train-00001-of-00002\.tfrecord is truncated: record 0"):
        open_dataset(f"tfrecord:{folder}", "train")
    shard.write_bytes(b"this is not a TFRecord file, it is text\n")
    with pytest.raises(DatasetError, match=r"train-00001-of-00002\.tfrecord is not a TFRecord file"):
        open_dataset(f"tfrecord:{folder}", "train")


def test_a_damaged_record_fails_the_data_check_naming_its_shard(shards):
    folder, _ = shards
    shard = folder / "train-00000-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[200] ^= 0xFF  # one flipped byte inside the first record's data (12-byte header): its checksum fails
    shard.write_bytes(bytes(data))
    train = open_dataset(f"tfrecord:{folder}", "train")  # the headers are intact
    with pytest.raises(DatasetError, match=r"train-00000-of-00002\.tfrecord is damaged.*checksum"):
        train.check()
    try:  # a random read does not verify checksums, but one that fails says why
        train.load(0)
    except DatasetError as error:
        assert "record 0 of TFRecord shard" in str(error) and "fails its checksum" in str(error)


def test_a_label_of_another_size_and_a_class_past_the_count_name_shard_and_image(tmp_path):
    folder = tmp_path / "bad"
    write_shards(folder, "train", [[(image_of(0), label_of(0), "good"), (image_of(1), label_of(1, h=H // 2), "small_label")],
                                   [(image_of(2), label_of(2, top=9), "class_8")]])  # fmt: skip
    (folder / "labels.txt").write_text("".join(n + "\n" for n in NAMES))
    train = open_dataset(f"tfrecord:{folder}", "train")
    with pytest.raises(DatasetError, match=r"mask size 128x32 differs.*record 1 \(small_label\) of TFRecord shard .*train-00000-of"):
        train.load(1)
    with pytest.raises(DatasetError, match=r"label [4-8] outside \[0, 4\).*record 0 \(class_8\) of TFRecord shard .*train-00001-of"):
        train.load(2)
    with pytest.raises(DatasetError, match=r"small_label"):
        train.check()
    # A multi-worker data check: each worker decodes every n-th sample; the one holding the bad sample fails.
    with pytest.raises(DatasetError, match=r"class_8"):
        train.check(shard=(0, 2))  # samples 0 and 2
    with pytest.raises(DatasetError, match=r"small_label"):
        train.check(shard=(1, 2))  # sample 1
    train.check(limit=1)


def test_a_colour_label_an_image_that_does_not_decode_and_a_missing_label_are_named(tmp_path):
    folder = tmp_path / "broken"
    records = []
    for name, key, value in (("palette", "image/segmentation/class/encoded", cv2.imencode(".png", image_of(1))[1].tobytes()),
                             ("garbled", "image/encoded", b"\xff\xd8 not a JPEG after all"),
                             ("unlabelled", "image/segmentation/class/encoded", b"")):  # fmt: skip
        example = tf.train.Example.FromString(deeplab_example(image_of(0), label_of(0), name)[0])
        example.features.feature[key].bytes_list.value[:] = [value]
        records.append(example.SerializeToString())
    os.makedirs(folder)
    with tf.io.TFRecordWriter(str(folder / "train-00000-of-00001.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    train = open_dataset(f"tfrecord:{folder}?dataset=pascal_voc_seg", "train")
    with pytest.raises(DatasetError, match=r"3-channel image.*single-channel.*record 0 \(palette\) of TFRecord shard"):
        train.load(0)
    with pytest.raises(DatasetError, match=r"not a tf.train.Example with a decodable image.*record 1 \(garbled\) of TFRecord shard"):
        train.load(1)
    with pytest.raises(DatasetError, match=r"no image/segmentation/class/encoded in record 2 \(unlabelled\)"):
        train.load(2)
    with pytest.raises(DatasetError, match=r"record 1 \(garbled\)"):  # the tf.data stream names it too
        train.check(shard=(1, 2))


def test_training_exits_2_naming_the_shard_and_writes_nothing(shards, tmp_path, capsys):
    from training import train as train_cli

    folder, _ = shards
    shard = folder / "train-00000-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-1])
    out = tmp_path / "run"
    assert train_cli.main([*TINY_TRAIN, "--data", f"tfrecord:{folder}", "--out", str(out)]) == 2
    assert "train-00000-of-00002.tfrecord is truncated" in capsys.readouterr().err
    assert not out.exists()


def test_calibration_images_come_from_the_shards(shards):
    from convert.parity import eval_images

    folder, _ = shards
    images = list(eval_images(f"tfrecord:{folder}", "train", (65, 65), {"mean": [127.5] * 3, "std": [127.5] * 3}, 2))
    assert len(images) == 2 and images[0].shape == (65, 65, 3) and images[0].dtype == np.float32


@pytest.mark.slow
@pytest.mark.trains
def test_train_one_step_then_evaluate_on_tfrecord_shards(shards, train_then_evaluate, tmp_path):
    folder, _ = shards
    spec = f"tfrecord:{folder}"
    result = train_then_evaluate(spec, tmp_path)
    assert result["images"] == 1 and list(result["per_class"]) == NAMES and result["data"] == spec
