"""Quantization-aware training (tfmot) with the KSAC pyramid included, and int8 accuracy comparison.

- `quantize.quantize_configs`: `QuantizableSharedAtrousConv2D`, `QuantizableSharedSeparableAtrousConv2D` and `SharedKernelQuantizeConfig`
  (the shared kernel quantized once, per channel; per-rate and partial-sum activation quantizers).
- `quantize.annotate`: `quantize_model(model)` (zoo model -> tfmot QAT model) and
  `copy_trained_weights(source, target)` (QAT weights back into a plain zoo model).
- `quantize.finetune`: `run_qat(QATSettings(...))`, the fine-tuning loop + int8 export.
- `quantize.checks`: `int8_rules(tflite)`, the structural rules of an int8 export.
- `python quantize/qat.py`, `python quantize/compare.py`: the command lines.
"""
