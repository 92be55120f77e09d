"""DeepLab's released mobile checkpoints (MobileNetV2 and MobileNetV3) as zoo models: the settings each was
trained with, in one table.

`python -m zoo release NAME --weights CKPT --out FILE.keras` builds the release's model (registry model,
depth multiplier, classes and their names, decoder, input size), loads DeepLab's checkpoint into it
(`zoo.tf1_checkpoint`; every weight must come from the file) and saves it: a trained model that
`convert/to_tflite.py --model FILE.keras` exports like any other. Nothing is downloaded: CKPT is the
`model.ckpt` prefix of the release's tarball (research/deeplab/g3doc/model_zoo.md), unpacked by the user.
"""

from __future__ import annotations

import dataclasses

from zoo.labels import CITYSCAPES_LABELS, DEEPLAB_ADE20K_LABELS, VOC_LABELS
from zoo.registry import DEFAULT_INPUT_SIZE


@dataclasses.dataclass(frozen=True)
class Release:
    """One DeepLab release (research/deeplab/g3doc/model_zoo.md) and what it needs of `zoo.build_model`.

    Attributes:
        model: the registry model.
        width: DeepLab's depth multiplier.
        label_names: one name per class the checkpoint's logits predict.
        decoder: whether the release has DeepLab's decoder.
        input_size: the input side of the built model (a phone-sized default; any size works).
        dataset: DeepLab's dataset name (its `build_*_data.py` and `--dataset` flag).
        published: DeepLab's figures for it, as model_zoo.md states them.
    """

    model: str
    width: float
    label_names: tuple[str, ...]
    decoder: bool
    input_size: int
    dataset: str
    published: str


_VOC = dict(model="mobilenetv2_deeplab", label_names=VOC_LABELS, decoder=False, input_size=DEFAULT_INPUT_SIZE,
            dataset="pascal_voc_seg")  # fmt: skip
RELEASES: dict[str, Release] = {
    "mobilenetv2_coco_voc_trainaug": Release(width=1.0, published="75.32% VOC val (OS 16), 2.75B MAdds at 513", **_VOC),
    "mobilenetv2_coco_voc_trainval": Release(width=1.0, published="80.25% VOC test (OS 8, multi-scale)", **_VOC),
    "mobilenetv2_dm05_coco_voc_trainaug": Release(width=0.5, published="70.19% VOC val, 0.88B MAdds at 513", **_VOC),
    "mobilenetv2_dm05_coco_voc_trainval": Release(width=0.5, published="trained on VOC train_aug + trainval (for the test server)", **_VOC),
    # DeepLab evaluates Cityscapes at 1025x2049; 769 (its training crop) is the square default here.
    "mobilenetv2_coco_cityscapes_trainfine": Release(
        model="mobilenetv2_deeplab", width=1.0, label_names=CITYSCAPES_LABELS, decoder=False, input_size=769,
        dataset="cityscapes", published="70.71% Cityscapes val (OS 16), 21.27B MAdds at 1025x2049"),
    # DeepLab's MobileNetV3 LR-ASPP releases (output stride 32, sum-merge logits decoder at stride 8), trained on 769 crops.
    "mobilenetv3_large_cityscapes_trainfine": Release(
        model="mobilenetv3_large_lraspp", width=1.0, label_names=CITYSCAPES_LABELS, decoder=True, input_size=769,
        dataset="cityscapes", published="72.41% Cityscapes val, 15.95B MAdds at 1025x2049"),
    "mobilenetv3_small_cityscapes_trainfine": Release(
        model="mobilenetv3_small_lraspp", width=1.0, label_names=CITYSCAPES_LABELS, decoder=True, input_size=769,
        dataset="cityscapes", published="68.99% Cityscapes val, 4.63B MAdds at 1025x2049"),
    "mobilenetv2_ade20k_train": Release(
        model="mobilenetv2_deeplab", width=1.0, label_names=DEEPLAB_ADE20K_LABELS, decoder=True, input_size=257,
        dataset="ade20k", published="32.04% ADE20K val"),
}  # fmt: skip


def release(name: str) -> Release:
    """The table's row for `name`; ValueError listing the releases if unknown."""
    if name not in RELEASES:
        raise ValueError(f"unknown DeepLab release {name!r}; known: {', '.join(RELEASES)}")
    return RELEASES[name]
