"""The registry of named models and the one entry point, `build_model`.

Adding a model is adding a row to `MODELS`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import tf_keras as keras

# The description's type and the one inference preprocessing contract (letterbox, half-pixel bilinear,
# top-left, mean padding: `Preprocessing()`, defined beside its implementation) that every model records.
from inference.description import ModelDescription, Normalization, Preprocessing
# The output strides every backbone supports, (8, 16, 32): defined with the description, which records one.
from inference.description import OUTPUT_STRIDES  # noqa: F401  (zoo.registry.OUTPUT_STRIDES for the commands)
from zoo import atrous
from zoo.backbones import BACKBONES
from zoo.decoder import DEEPLABV3PLUS, SUM_LOGITS, deeplabv3plus_decoder, sum_logits_decoder
from zoo.heads import atrous_head, has_pyramid, is_deeplab_graph
from zoo.labels import VOC_LABELS  # the default label names of a 21-class model
from zoo.layers import BatchNormSettings, DescriptionLayer, ResizeToMatch, batch_norm_settings, check_rates
from zoo.weights import load_weights


class ModelSpec(NamedTuple):
    backbone: str
    head: str
    decoder: bool  # default; build_model(decoder=...) overrides it
    # Channel counts at a width other than 1 as DeepLab's MobileNetV2 rounds them (slim's depth multiplier
    # with divisible_by=1 and min_depth=1, research/deeplab/core/feature_extractor.py), so that its
    # depth-multiplier-0.5 release loads; otherwise as keras.applications rounds them (multiples of 8).
    slim_widths: bool = False
    # The model's own defaults (build_model's output_stride / head_filters when not given) and its decoder:
    # DeepLabV3+'s (stride 4) or DeepLab's sum-merge logits decoder of its MobileNetV3 releases (stride 8).
    output_stride: int = 16
    head_filters: int = 256
    decoder_kind: str = DEEPLABV3PLUS


MODELS: dict[str, ModelSpec] = {
    "mobilenetv2_aspp": ModelSpec("mobilenetv2", "aspp", decoder=False),
    "mobilenetv2_ksac": ModelSpec("mobilenetv2", "ksac", decoder=False),
    "xception65_aspp": ModelSpec("xception65", "aspp", decoder=True),
    "xception65_ksac": ModelSpec("xception65", "ksac", decoder=True),
    # Separable pyramids (zoo/heads.py): DeepLab's own ASPP and decoder, and KSAC with shared separable kernels.
    "mobilenetv2_aspp_separable": ModelSpec("mobilenetv2", "aspp_separable", decoder=False),
    "mobilenetv2_ksac_separable": ModelSpec("mobilenetv2", "ksac_separable", decoder=False),
    "xception65_aspp_separable": ModelSpec("xception65", "aspp_separable", decoder=True),
    "xception65_ksac_separable": ModelSpec("xception65", "ksac_separable", decoder=True),
    # DeepLab's mobile head without a pyramid (image pooling + 1x1 + projection): its MobileNetV2 releases.
    "mobilenetv2_deeplab": ModelSpec("mobilenetv2", "deeplab", decoder=False, slim_widths=True),
    # MobileNetV3 (DeepLab's _seg variants) with DeepLab's flags for its releases: output stride 32, 128-channel
    # head, the sum-merge logits decoder at stride 8. LR-ASPP is DeepLab's head; KSAC's separable shared
    # pyramid takes its place, with the same stride, width and decoder (docs/models.md says why).
    **{f"mobilenetv3_{size}_{head}": ModelSpec(f"mobilenetv3_{size}", head, decoder=True, output_stride=32,
                                              head_filters=128, decoder_kind=SUM_LOGITS)
       for size in ("large", "small") for head in ("lraspp", "ksac_separable")},
}

# The paper's Table 1 models (configs/paper/ has a recipe for each).
PAPER_MODELS = ("mobilenetv2_aspp", "mobilenetv2_ksac", "xception65_aspp", "xception65_ksac")

# The paper's input side (its training crop and evaluation size): the default of every size option.
DEFAULT_INPUT_SIZE = 513

# Both backbones were trained on images scaled to [-1, 1]: x = (pixel - mean) / std.
INPUT_NORMALIZATION = Normalization(mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5))



def list_models() -> list[str]:
    """The names `build_model` accepts."""
    return sorted(MODELS)


def list_backbones() -> list[str]:
    """The backbones the registry's models use (command-line choices)."""
    return sorted({spec.backbone for spec in MODELS.values()})


def list_heads() -> list[str]:
    """The heads the registry's models use (command-line choices)."""
    return sorted({spec.head for spec in MODELS.values()})


def model_name(backbone: str, head: str) -> str:
    """The registered model made of `backbone` and `head`; ValueError listing the choices if none is."""
    for name, spec in MODELS.items():
        if (spec.backbone, spec.head) == (backbone, head):
            return name
    raise ValueError(f"no model combines backbone {backbone!r} and head {head!r}; valid models: {', '.join(list_models())}")


def model_spec(name: str) -> ModelSpec:
    """The registry's row for `name`; ValueError listing the valid names if unknown."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return MODELS[name]


def default_output_stride(name: str) -> int:
    """The output stride `build_model(name)` uses when none is given (`ModelSpec.output_stride`)."""
    return model_spec(name).output_stride


def default_rates(output_stride: int, head: str | None = None) -> tuple[int, ...]:
    """DeepLab's rates: (6, 12, 18) at output stride 16, doubled at 8, halved at 32; none for a `head`
    without a pyramid (the "deeplab" head)."""
    if head is not None and not has_pyramid(head):
        return ()
    return tuple(r * 16 // output_stride for r in (6, 12, 18))


def _input_shape(input_size: int | Sequence[int]) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(int(s) < 1 for s in size):
        raise ValueError(f"input_size must be a positive int or (height, width), got {input_size!r}")
    return int(size[0]), int(size[1])


def build_model(
    name: str,
    num_classes: int = 21,
    input_size: int | Sequence[int] = DEFAULT_INPUT_SIZE,
    output_stride: int | None = None,
    rates: Sequence[int] | None = None,
    decoder: bool | None = None,
    width: float = 1.0,
    backbone_weights: str | None = None,
    *,
    head_filters: int | None = None,
    dropout: float = 0.1,
    sync_batchnorm: bool = False,
    bn_momentum: float | None = None,
    label_names: Sequence[str] | None = None,
    training_forms: bool = False,
) -> keras.Model:
    """Builds a named segmentation model.

    Args:
        name: one of `list_models()`.
        num_classes: classes predicted, background included.
        input_size: side of the square input, or (height, width).
        output_stride: 8, 16 or 32; None: the model's own (`ModelSpec.output_stride`: 16, MobileNetV3's 32).
        rates: atrous rates, in pixels of the feature map; None: `default_rates(output_stride, head)`,
            (6, 12, 18) at OS 16, doubled at OS 8, halved at OS 32; none for the pyramid-less head. (A config that changes the stride
            without giving rates gets these too: `configs.resolve`.)
        decoder: add the DeepLabV3+ decoder; default per model (Xception65 yes).
        width: backbone width multiplier.
        backbone_weights: a local Keras HDF5 weights file or `.keras` model (loaded by
            layer name; keras.applications' MobileNetV3 `.h5` by an explicit name map), or a TF1
            checkpoint of DeepLab or TF-slim (mapped by `zoo.tf1_checkpoint`); see `zoo.weights`.
            The import report is printed.
        head_filters: channels of the head and decoder; None: the model's own (256 as in the paper;
            MobileNetV3's 128, as DeepLab's `aspp_convs_filters`).
        dropout: dropout after the head's projection.
        sync_batchnorm: synchronise every BatchNorm (backbone included) across replicas
            (multi-device training).
        bn_momentum: moving-average momentum of every BatchNorm; None keeps the model's own
            (0.999 in MobileNetV2 and MobileNetV3 as keras.applications, 0.9997 elsewhere as DeepLab). Use e.g.
            0.99 for runs of a few thousand steps, whose moving statistics would otherwise lag.
        label_names: a name per class; VOC's names by default at 21 classes.
        training_forms: build the dilated Conv2D and DepthwiseConv2D layers as `zoo.atrous`'s
            subclasses, which take the fastest form that trains on this machine (Keras' own take
            space-to-batch); same config, weights and outputs. For the model that trains: train.py
            saves a model built without them, so saved and exported models hold Keras' own layers.

    Returns:
        A tf_keras Model from normalised images (see `describe(model).normalization`)
        to logits at the input resolution, carrying its description.

    Example:
    >>> model = build_model("mobilenetv2_ksac", input_size=129, width=0.35)
    """
    spec = model_spec(name)
    height, width_px = _input_shape(input_size)
    output_stride = spec.output_stride if output_stride is None else output_stride
    head_filters = spec.head_filters if head_filters is None else head_filters
    if rates is None:
        rates = default_rates(output_stride, spec.head)
    elif has_pyramid(spec.head) or rates:  # the pyramid-less head takes no rates (atrous_head says so)
        rates = check_rates(rates)
    decoder = spec.decoder if decoder is None else bool(decoder)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if label_names is None:
        label_names = VOC_LABELS if num_classes == len(VOC_LABELS) else [f"class_{i}" for i in range(num_classes)]
    if len(label_names) != num_classes:
        raise ValueError(f"label_names has {len(label_names)} names for {num_classes} classes")

    inputs = keras.Input((height, width_px, 3), name="image")
    with batch_norm_settings(BatchNormSettings(sync=sync_batchnorm, momentum=bn_momentum)), atrous.training_forms(training_forms):
        slim_widths = {"slim_widths": True} if spec.slim_widths else {}
        features = BACKBONES[spec.backbone](inputs, output_stride=output_stride, width=width, **slim_widths)
        x = atrous_head(features.features, spec.head, rates, filters=head_filters, dropout=dropout, output_stride=output_stride)
        if decoder and spec.decoder_kind == SUM_LOGITS:
            logits = sum_logits_decoder(x, features.stride8, num_classes)
        else:
            if decoder:
                x = deeplabv3plus_decoder(x, features.low_level, filters=head_filters, separable=is_deeplab_graph(spec.head))
            logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
    # DeepLab's predict_labels upsamples the logits corner-aligned (TF1's align_corners=True); the
    # models that are DeepLab's graph do too (the paper's regular ones keep half-pixel centres).
    logits = ResizeToMatch(align_corners=is_deeplab_graph(spec.head), name="upsample_logits")([logits, inputs])
    description = ModelDescription(
        name=name,
        backbone=spec.backbone,
        head=spec.head,
        decoder=decoder,
        rates=tuple(rates),
        output_stride=output_stride,
        input_size=(height, width_px),
        num_classes=num_classes,
        label_names=tuple(label_names),
        width=width,
        head_filters=head_filters,
        normalization=INPUT_NORMALIZATION,
        preprocessing=Preprocessing(),
    )
    outputs = DescriptionLayer(description)(logits)
    model = keras.Model(inputs, outputs, name=name)
    if backbone_weights is not None:
        load_weights(model, backbone_weights)
    return model


def _description_layer(model: keras.Model) -> DescriptionLayer:
    for layer in reversed(model.layers):
        if isinstance(layer, DescriptionLayer):
            return layer
    raise ValueError(
        f"model {model.name!r} carries no description; build it with zoo.build_model "
        "(or train it with training/train.py) so that later steps know its classes and input"
    )


def describe(model: keras.Model) -> ModelDescription:
    """The description stored in a model built by `build_model` (raises ValueError if it has none)."""
    return _description_layer(model).description


def update_description(model: keras.Model, **fields: Any) -> None:
    """Sets fields of the stored description (e.g. `data="synthetic"` after training), checked as
    `ModelDescription.replace` checks them."""
    layer = _description_layer(model)
    layer.description = layer.description.replace(**fields)
