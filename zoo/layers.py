"""Custom layers of the zoo: the shared-kernel atrous pyramid and two small helpers.

Every layer here is registered with Keras so that a saved `.keras` model reloads
with `tf_keras.models.load_model(path)` once `zoo` is imported, with no
`custom_objects` from the user.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import tensorflow as tf
import tf_keras as keras

from inference.description import ModelDescription
from zoo.atrous import dilated_conv2d, dilated_depthwise_conv2d

PACKAGE = "ksac_zoo"

# DeepLab's BatchNorm settings (decay 0.9997, epsilon 1e-5) for everything outside
# the MobileNetV2 backbone, which keeps keras.applications' values so that its
# ImageNet weights behave as trained.
BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class BatchNormSettings:
    """Model-wide BatchNorm options that `zoo.build_model` takes (see `batch_norm_settings`).

    Attributes:
        sync: compute the statistics over the global batch of all replicas (multi-device training);
            synchronized BatchNorm cannot use the fused kernel.
        momentum: the moving-average momentum of every BatchNorm; None keeps each layer's own.
    """

    sync: bool = False
    momentum: float | None = None


_BATCH_NORM_SETTINGS: contextvars.ContextVar[BatchNormSettings] = contextvars.ContextVar(
    "batch_norm_settings", default=BatchNormSettings()
)


@contextlib.contextmanager
def batch_norm_settings(settings: BatchNormSettings) -> Iterator[None]:
    """Every `batch_norm` created inside takes `settings` (a scope, like `tf.name_scope`).

    A scope rather than a parameter of every block builder: the backbones, heads and
    decoder all create their BatchNorms through `batch_norm`, and `build_model` is the
    one place that opens the scope.
    """
    token = _BATCH_NORM_SETTINGS.set(settings)
    try:
        yield
    finally:
        _BATCH_NORM_SETTINGS.reset(token)


def batch_norm(name: str, sync: bool = False, **kwargs: Any) -> keras.layers.BatchNormalization:
    """A BatchNormalization with DeepLab's defaults (unless `kwargs` say otherwise), adjusted by the
    enclosing `batch_norm_settings`; `sync=True` synchronises across replicas."""
    settings = _BATCH_NORM_SETTINGS.get()
    kwargs.setdefault("momentum", BN_MOMENTUM)
    kwargs.setdefault("epsilon", BN_EPSILON)
    if settings.momentum is not None:
        kwargs["momentum"] = settings.momentum
    return keras.layers.BatchNormalization(name=name, synchronized=sync or settings.sync, **kwargs)


def check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    """Validates an atrous-rate tuple and returns it as a tuple of ints."""
    try:
        values = tuple(int(r) for r in rates)
    except (TypeError, ValueError):
        raise ValueError(f"rates must be a sequence of positive integers, got {rates!r}") from None
    if not values or any(r < 1 for r in values) or any(float(r) != int(r) for r in rates):
        raise ValueError(f"rates must be a non-empty sequence of positive integers, got {rates!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"rates must not repeat a value, got {rates!r}")
    return values


class _SharedKernelPyramid(keras.layers.Layer):
    """What both KSAC pyramids hold: filters, rates, kernel size, and per-rate BatchNorms with (by default)
    non-negative gammas; their output shape and config. Subclasses create the kernels and the call."""

    def __init__(
        self,
        filters: int,
        rates: Sequence[int] = (6, 12, 18),
        kernel_size: int = 3,
        non_negative_scale: bool = True,
        sync_batchnorm: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.rates = check_rates(rates)
        self.kernel_size = int(kernel_size)
        self.non_negative_scale = bool(non_negative_scale)
        self.sync_batchnorm = bool(sync_batchnorm)

    def _branch_norm(self, name: str) -> keras.layers.BatchNormalization:
        """A BatchNorm of one rate's branch: DeepLab's settings, gamma >= 0 unless `non_negative_scale=False`."""
        constraint = keras.constraints.NonNeg() if self.non_negative_scale else None
        return batch_norm(name, sync=self.sync_batchnorm, gamma_constraint=constraint)

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)[:-1].concatenate([self.filters])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            filters=self.filters,
            rates=list(self.rates),
            kernel_size=self.kernel_size,
            non_negative_scale=self.non_negative_scale,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class SharedAtrousConv2D(_SharedKernelPyramid):
    """Kernel-Sharing Atrous Convolution (KSAC) pyramid: one 3x3 kernel, many rates.

    Computes `sum_r ReLU(BN_r(conv(x, K, dilation=r)))` (the paper's Algorithm 1):
    ONE kernel `K` is applied at every rate; each rate has its own BatchNorm and
    ReLU; the branch outputs are summed. Adding a rate adds a BatchNorm (4 x filters
    weights) and no convolution weights.

    The BatchNorm scales (gamma) are constrained to be non-negative by default. A
    positive per-channel scale folded into the kernel leaves its int8 values
    unchanged, so every branch of the int8 export can read the same int8 buffer;
    a negative scale flips the sign of that channel and would break the sharing
    (see `convert/graph.py` for the fallback used when it happens anyway).

    Args:
        filters: output channels (256 in the paper).
        rates: atrous rates, e.g. `(6, 12, 18)` or `(1, 6, 12, 18, 24)`.
        kernel_size: spatial size of the shared kernel (3).
        non_negative_scale: constrain every branch's BatchNorm gamma to be >= 0.
        sync_batchnorm: synchronise BatchNorm statistics across replicas.

    Weight decay is not a layer option: the trainer applies it to the shared kernel
    like every other convolution kernel (`training.losses.decayed_variables`).

    Example:
    >>> layer = SharedAtrousConv2D(filters=8, rates=(1, 2, 3))
    >>> layer(tf.zeros([1, 17, 17, 4])).shape
    TensorShape([1, 17, 17, 8])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the Args above, as every KSAC pyramid takes them
        # Models saved before weight decay moved to the trainer carry `kernel_regularizer: None`.
        if kwargs.pop("kernel_regularizer", None) is not None:
            raise ValueError("SharedAtrousConv2D takes no kernel_regularizer; see training.losses.decayed_variables")
        super().__init__(*args, **kwargs)
        self.batch_norms = [self._branch_norm(f"bn_rate{rate}") for rate in self.rates]

    def build(self, input_shape: tf.TensorShape) -> None:
        in_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=keras.initializers.HeNormal(),
            trainable=True,
        )
        branch_shape = tf.TensorShape(input_shape)[:-1].concatenate([self.filters])
        for bn in self.batch_norms:
            with tf.name_scope(bn.name):
                bn.build(branch_shape)
        super().build(input_shape)

    def branch_conv(self, inputs: tf.Tensor, rate: int) -> tf.Tensor:
        """The shared kernel applied at one rate, before its BatchNorm."""
        return dilated_conv2d(inputs, self.kernel, rate)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        outputs = None
        for rate, bn in zip(self.rates, self.batch_norms):
            branch = tf.nn.relu(bn(self.branch_conv(inputs, rate), training=training))
            outputs = branch if outputs is None else outputs + branch
        return outputs



@keras.utils.register_keras_serializable(package=PACKAGE)
class SharedSeparableAtrousConv2D(_SharedKernelPyramid):
    """Separable KSAC pyramid: one depthwise and one pointwise kernel shared by every rate.

    Per rate r, DeepLab's separable branch (`split_separable_conv2d`) with the kernels shared:

        y_r = ReLU(BN2_r(P * ReLU(BN1_r(depthwise(x, D, dilation=r)))))      output = sum_r y_r

    - shared: the depthwise kernel D [3, 3, C, 1] and the pointwise kernel P [1, 1, C, F];
    - per rate: BN1_r over the C depthwise channels and BN2_r over the F outputs (each with a
      non-negative gamma, as in `SharedAtrousConv2D`, so that int8 keeps one buffer per kernel).

    Why the BatchNorms sit there: each rate sees a differently dilated neighbourhood, so its
    depthwise responses have their own statistics (the reason the paper gives every rate its own
    BN); a BN after the depthwise step only (P applied to a shared normalisation) would mix rates of
    different scale in one pointwise product. With both BNs per rate every branch is exactly DeepLab's
    separable ASPP branch with tied kernels, so a DeepLab checkpoint maps onto it tensor by tensor
    (its rate branches' BatchNorms load as they are; the shared kernels start from the mean of the
    branches' kernels, `zoo.tf1_checkpoint`).

    Arithmetic (C input channels, F filters, n rates, an H x W map; MobileNetV2 at 513: C=320,
    F=256, n=3, 33 x 33): weights 9C + CF (84,800) instead of n(9C + CF) for separable ASPP (254,400)
    and 9CF (737,280) for the regular KSAC kernel; BatchNorms n * 4(C + F) (6,912). MACs
    n * HW(9C + CF) = 0.277 G, as separable ASPP's, against 2.409 G for the regular pyramid.

    Args:
        filters: output channels F (256 in the paper).
        rates: atrous rates, e.g. `(6, 12, 18)`.
        kernel_size: spatial size of the shared depthwise kernel (3).
        non_negative_scale: constrain every BatchNorm gamma to be >= 0.
        sync_batchnorm: synchronise BatchNorm statistics across replicas.

    Example:
    >>> layer = SharedSeparableAtrousConv2D(filters=8, rates=(1, 2, 3))
    >>> layer(tf.zeros([1, 17, 17, 4])).shape
    TensorShape([1, 17, 17, 8])
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the Args above, as every KSAC pyramid takes them
        super().__init__(*args, **kwargs)
        self.depthwise_batch_norms = [self._branch_norm(f"bn_rate{rate}_depthwise") for rate in self.rates]
        self.pointwise_batch_norms = [self._branch_norm(f"bn_rate{rate}_pointwise") for rate in self.rates]

    @property
    def batch_norms(self) -> list[keras.layers.BatchNormalization]:
        """Every BatchNorm of the layer (depthwise ones first), as `SharedAtrousConv2D.batch_norms`."""
        return self.depthwise_batch_norms + self.pointwise_batch_norms

    def build(self, input_shape: tf.TensorShape) -> None:
        in_channels = int(input_shape[-1])
        # DeepLab's initialisers for split_separable_conv2d: truncated normal, stddev 0.33 and 0.06.
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel",
            shape=(self.kernel_size, self.kernel_size, in_channels, 1),
            initializer=keras.initializers.TruncatedNormal(stddev=0.33),
            trainable=True,
        )
        self.pointwise_kernel = self.add_weight(
            name="pointwise_kernel",
            shape=(1, 1, in_channels, self.filters),
            initializer=keras.initializers.TruncatedNormal(stddev=0.06),
            trainable=True,
        )
        spatial = tf.TensorShape(input_shape)[:-1]
        for norms, channels in ((self.depthwise_batch_norms, in_channels), (self.pointwise_batch_norms, self.filters)):
            for bn in norms:
                with tf.name_scope(bn.name):
                    bn.build(spatial.concatenate([channels]))
        super().build(input_shape)

    def branch_depthwise(self, inputs: tf.Tensor, rate: int) -> tf.Tensor:
        """The shared depthwise kernel applied at one rate, before its BatchNorm."""
        return dilated_depthwise_conv2d(inputs, self.depthwise_kernel, rate)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        outputs = None
        for rate, bn1, bn2 in zip(self.rates, self.depthwise_batch_norms, self.pointwise_batch_norms):
            x = tf.nn.relu(bn1(self.branch_depthwise(inputs, rate), training=training))
            x = tf.nn.conv2d(x, self.pointwise_kernel, strides=1, padding="SAME")
            branch = tf.nn.relu(bn2(x, training=training))
            outputs = branch if outputs is None else outputs + branch
        return outputs



# TF-slim's MobileNetV3 (research/slim/nets/mobilenet/mobilenet_v3.py) gates squeeze-and-excitation with
# relu6(x + 3) * 0.16667, and DeepLab's `utils.q_sigmoid` (its LR-ASPP image gate) is the same expression;
# keras.applications uses 1 / 6. The zoo keeps slim's constant, so DeepLab's releases compute what they did.
SLIM_HARD_SIGMOID_SCALE = 0.16667


@keras.utils.register_keras_serializable(package=PACKAGE)
class HardSigmoid(keras.layers.Layer):
    """`relu6(x + 3) * scale`: MobileNetV3's hard sigmoid (the squeeze-and-excitation gate).

    A layer of its own (not `keras.activations.hard_sigmoid`, which tf_keras defines as the older
    0.2 x + 0.5) so that QAT can give it a quantize config (`quantize/quantize_configs.py`).

    Example:
    >>> HardSigmoid()(tf.constant([-4.0, 0.0, 4.0])).numpy().round(3)
    array([0.   , 0.5  , 1.   ], dtype=float32)
    """

    def __init__(self, scale: float = SLIM_HARD_SIGMOID_SCALE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu6(inputs + 3.0) * self.scale

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["scale"] = self.scale
        return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class HardSwish(keras.layers.Layer):
    """`x * relu6(x + 3) / 6`, MobileNetV3's hard swish, written as slim writes it so that the TFLite
    converter fuses it into one HARD_SWISH op (int8, GPU and XNNPACK kernels exist for it).

    Example:
    >>> HardSwish()(tf.constant([-4.0, 0.0, 4.0])).numpy()
    array([-0.,  0.,  4.], dtype=float32)
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * tf.nn.relu6(inputs + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package=PACKAGE)
class CropWindowPooling2D(keras.layers.Layer):
    """DeepLab's image pooling with a crop size (`image_pooling_crop_size`, `image_pooling_stride`): averages
    windows the size of a `crop` input's features at `output_stride`, moved by `strides`, VALID padding.

    The window is worked out from the input's static size at every call, so a model rebuilt at another
    input size (export at --input-size) pools as DeepLab would at that size: at its 1025 x 2049 evaluation
    size, 25 x 25 windows give a 3 x 9 grid; features smaller than the window (any input up to 769) are
    pooled whole (the window clipped to them: global pooling, which DeepLab itself cannot run there).

    Example:
    >>> CropWindowPooling2D((769, 769), 32, (4, 5))(tf.zeros([1, 33, 65, 8])).shape
    TensorShape([1, 3, 9, 8])
    """

    def __init__(self, crop: Sequence[int] = (769, 769), output_stride: int = 32, strides: Sequence[int] = (4, 5),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crop = tuple(int(c) for c in crop)
        self.output_stride = int(output_stride)
        self.strides = tuple(int(s) for s in strides)

    def window(self, height: int, width: int) -> tuple[int, int]:
        """The pooling window on features of `height` x `width` (DeepLab's `scale_dimension`, clipped)."""
        sizes = [int((c - 1) / self.output_stride + 1) for c in self.crop]
        return min(sizes[0], height), min(sizes[1], width)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:  # no static size: the whole map (DeepLab without a crop size)
            return tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        return tf.nn.avg_pool2d(inputs, self.window(height, width), self.strides, "VALID")

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        if shape[1] is None or shape[2] is None:
            return tf.TensorShape([shape[0], 1, 1, shape[3]])
        window = self.window(shape[1], shape[2])
        grid = [(size - w) // s + 1 for size, w, s in zip((shape[1], shape[2]), window, self.strides)]
        return tf.TensorShape([shape[0], *grid, shape[3]])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(crop=list(self.crop), output_stride=self.output_stride, strides=list(self.strides))
        return config


@keras.utils.register_keras_serializable(package=PACKAGE)
class ResizeToMatch(keras.layers.Layer):
    """Bilinearly resizes `inputs[0]` to the spatial size of `inputs[1]`.

    Used for the image-pooling branch, the decoder and the final upsampling to
    the input resolution; unlike `keras.layers.Resizing` it needs no fixed size.
    Half-pixel centres by default; `align_corners=True` is TF1's corner-aligned resize, which
    DeepLab's decoder uses (the separable models' decoder, so that DeepLab's checkpoints compute
    what they computed in DeepLab).

    Example:
    >>> ResizeToMatch()([tf.zeros([1, 4, 4, 2]), tf.zeros([1, 9, 7, 3])]).shape
    TensorShape([1, 9, 7, 2])
    """

    def __init__(self, align_corners: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        source, reference = inputs
        static = reference.shape[1:3]
        size = static if None not in static else tf.shape(reference)[1:3]
        if self.align_corners:  # TF1's resize_bilinear(align_corners=True), as DeepLab's decoder resizes
            resized = tf.raw_ops.ResizeBilinear(images=source, size=size, align_corners=True, half_pixel_centers=False)
        else:
            resized = tf.image.resize(source, size, method="bilinear")
        # tf.image.resize returns float32 from 16-bit inputs; a mixed-precision model keeps its compute dtype.
        return tf.cast(resized, self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if self.align_corners:  # files of models without it keep the config they always had
            config["align_corners"] = True
        return config

    def compute_output_shape(self, input_shapes: Sequence[tf.TensorShape]) -> tf.TensorShape:
        source, reference = (tf.TensorShape(s) for s in input_shapes)
        return tf.TensorShape([source[0], reference[1], reference[2], source[3]])


# Registered under the layer's first name, ModelDescription, so that every saved `.keras` file loads:
# Keras finds the class by the registered name ("ksac_zoo>ModelDescription"), which files of both
# class names (ModelDescription before, DescriptionLayer now) carry.
@keras.utils.register_keras_serializable(package=PACKAGE, name="ModelDescription")
class DescriptionLayer(keras.layers.Layer):
    """Identity layer that carries the model's `ModelDescription` in its config.

    The description (name, backbone, head, rates, output stride, input size, classes, label names,
    input normalisation and preprocessing) is saved and reloaded with the model, so later steps
    (training, export, benchmarks) never ask for it again. Read it with `zoo.describe(model)`.
    The config holds `description.to_dict()`; a version-1 one (saved before versions) is upgraded
    when the model loads.
    """

    def __init__(self, description: ModelDescription | Mapping[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("name", "model_description")
        super().__init__(**kwargs)
        self.description = description

    @property
    def description(self) -> ModelDescription:
        return self._description

    @description.setter
    def description(self, value: ModelDescription | Mapping[str, Any]) -> None:
        # A JSON object (a config being loaded) goes through the one reader; Keras may have wrapped
        # it in its tracking types, which from_dict reads as mappings.
        self._description = value if isinstance(value, ModelDescription) else ModelDescription.from_dict(value)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["description"] = self.description.to_dict()
        return config
