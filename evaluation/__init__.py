"""Measuring and using trained models: streaming mIoU, one predictor over `.keras` and `.tflite`,
`python evaluation/evaluate.py` (mIoU) and `python evaluation/predict.py` (one image's overlay)."""
