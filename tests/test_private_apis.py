"""The private APIs of tensorflow-model-optimization and the TFLite converter that the project patches.

`pyproject.toml` pins the versions these were written against (compatible release).
An upgrade that changes one of them fails here, naming the API, instead of
quietly changing what QAT trains or what the int8 export calibrates.
"""

from __future__ import annotations

import inspect
import re

from tensorflow.lite.python.optimize import calibrator
from tensorflow_model_optimization.python.core.quantization.keras import quant_ops
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_layout_transform as layout_transform,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_transforms
from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import model_transformer

from quantize import annotate
from quantize.annotate import OrderKeepingLayoutTransform


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def transform_names(method) -> list[str]:
    return re.findall(r"default_8bit_transforms\.(\w+)\(", inspect.getsource(method))


def test_moving_average_quantize_still_takes_ema_decay():
    # quantize.calibrate.instant_ranges wraps it and sets ema_decay=0.
    names = parameters(quant_ops.MovingAvgQuantize)
    assert names[:3] == ["inputs", "min_var", "max_var"] and "ema_decay" in names, (
        f"tfmot changed quant_ops.MovingAvgQuantize{inspect.signature(quant_ops.MovingAvgQuantize)}; "
        "review quantize/calibrate.py:instant_ranges"
    )


def test_calibrator_calibrate_signature_is_unchanged():
    # convert.activation_ranges.ranges_replaced_after_calibration replaces it.
    assert parameters(calibrator.Calibrator.calibrate) == ["self", "dataset_gen"], (
        f"TFLite changed Calibrator.calibrate{inspect.signature(calibrator.Calibrator.calibrate)}; "
        "review convert/activation_ranges.py"
    )


def test_our_layout_transform_is_tfmots_without_the_concat_transforms():
    # quantize.annotate.OrderKeepingLayoutTransform copies tfmot's transform list minus ConcatTransform*.
    assert parameters(layout_transform.Default8BitQuantizeLayoutTransform.apply) == ["self", "model", "layer_quantize_map"]
    assert parameters(model_transformer.ModelTransformer.__init__)[:5] == [
        "self", "model", "transforms", "candidate_layers", "layer_metadata"
    ]  # fmt: skip
    theirs = transform_names(layout_transform.Default8BitQuantizeLayoutTransform.apply)
    # Ours also lists two of its own (MobileNetV3): LayerReLUKernelQuantize in LayerReLUQuantize's place (a
    # subclass of it) and ConvHardSigmoidQuantize after tfmot's (see quantize/annotate.py).
    assert issubclass(annotate.LayerReLUKernelQuantize, default_8bit_transforms.LayerReLUQuantize)
    source = inspect.getsource(OrderKeepingLayoutTransform.apply)
    ours = re.findall(r"(?:default_8bit_transforms\.)?(\w+Quantize|\w+Transform\w*)\(\)", source)
    ours = ["LayerReLUQuantize" if name == "LayerReLUKernelQuantize" else name for name in ours if name != "ConvHardSigmoidQuantize"]
    assert theirs and ours, "no transform list found: review quantize/annotate.py against tfmot"
    expected = [name for name in theirs if not name.startswith("ConcatTransform")]
    assert ours == expected, (
        f"tfmot's Default8BitQuantizeLayoutTransform now applies {theirs}; "
        "update quantize/annotate.py:OrderKeepingLayoutTransform to match (minus ConcatTransform*)"
    )
