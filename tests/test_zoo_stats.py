"""zoo.count_macs against two independent counts: TensorFlow's own per-op FLOP statistics of the traced
forward graph (every registry model), and a hand count of a tiny model with every layer kind."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tensorflow.python.framework import ops  # get_stats_for_node_def: TF's registered per-op "flops"

from zoo import atrous, build_model, count_macs, list_models
from zoo.layers import SharedAtrousConv2D, SharedSeparableAtrousConv2D

MULTIPLYING_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv2DBackpropInput")


def tensorflow_macs(model: keras.Model) -> int:
    """Half the FLOPs TensorFlow's op statistics give the multiplying ops of the model's forward graph.

    Traced with native dilated ops and without the centre-tap rule (`atrous.as_written`), so each
    convolution is one op whose statistic is its full kernel times its outputs (space-to-batch pads).
    """
    h, w = model.input_shape[1:3]
    with atrous.as_written():
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec([1, h, w, 3], tf.float32)).graph  # fmt: skip
    flops = [ops.get_stats_for_node_def(graph, op.node_def, "flops").value
             for op in graph.get_operations() if op.type in MULTIPLYING_OPS]  # fmt: skip
    assert flops, "no multiplying op in the traced graph"
    return int(sum(flops)) // 2


@pytest.mark.parametrize("name", list_models())
def test_count_macs_equals_tensorflows_op_statistics(name, monkeypatch):
    monkeypatch.setenv(atrous.FORM_ENV, atrous.NATIVE)  # one op per dilated convolution (graph only, never run)
    model = build_model(name, input_size=97, training_forms=True)
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert depthwise, "every registry model has depthwise layers (the ones count_macs once missed)"
    assert count_macs(model) == tensorflow_macs(model)


def test_count_macs_by_hand_on_every_layer_kind():
    x = inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(x)  # 64 * 9*3*4 = 6,912
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 64 * 9*4*2 = 4,608
    x = keras.layers.SeparableConv2D(5, 3, strides=2, padding="same")(x)  # 16 * (9*8 + 8*5) = 1,792
    x = keras.layers.BatchNormalization()(x)
    x = SharedAtrousConv2D(filters=6, rates=(1, 2))(x)  # 2 rates * 16 * 9*5*6 = 8,640
    x = SharedSeparableAtrousConv2D(filters=4, rates=(1, 2, 3))(x)  # 3 * 16 * (9*6 + 6*4) = 3,744
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(x)  # 16 input positions * 2*2*4*3 = 768
    x = keras.layers.Dense(7)(x)  # 64 positions * 3*7 = 1,344
    model = keras.Model(inputs, x)
    assert count_macs(model) == 6912 + 4608 + 1792 + 8640 + 3744 + 768 + 1344


def test_count_macs_refuses_a_layer_it_cannot_count():
    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1], input_shape[-1]))

        def call(self, x):
            return tf.matmul(x, self.w)

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, Scale(name="scale")(inputs))
    with pytest.raises(TypeError, match="'scale' of kind Scale"):
        count_macs(model)
