"""Training and evaluation stack: datasets, augmentation, the training loop, mIoU, prediction.

Modules (one job each):

- `datasets`: `open_dataset(spec, split)` for `synthetic`, `voc:`, `sbd:`, `trainaug:`, `ade20k:`, `folder:`;
  `DatasetError`.
- `synthetic`: the procedural 21-class dataset (colour family x shape, textured objects of radius 7 to 96 px, about 14x).
- `preprocess`: `normalize`, `eval_inputs` (THE evaluation/calibration/parity transform), `train_augment`.
- `pipeline`: the tf.data training stream, a pure function of (seed, step) so that resume is exact;
  sharded by position, each worker decodes only its replicas' slices of the global batch.
- `trainer`: the one training loop (float and QAT): strategies, checkpoints, a lost worker.
- `losses`: cross-entropy ignoring 255, L2 weight decay.
- `metrics`: `ConfusionMatrix` (streaming mIoU).
- `predictors`: `load_predictor(path)` for `.keras` and `.tflite`.
- `runs`: run folders, `runs/latest`, the CSV log.
- `train.py`, `evaluate.py`, `predict.py`: the command-line tools (also importable: `main(argv)`).
"""
