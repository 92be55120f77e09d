"""Training zoo models: the training loop and what only it uses.

Modules (one job each):

- `train.py`: the command (`python training/train.py --help`; also importable: `main(argv)`).
- `trainer`: the one training loop (float and QAT): strategies, checkpoints, a lost worker.
- `pipeline`: the tf.data training stream, a pure function of (seed, step) so that resume is exact;
  sharded by position, each worker decodes only its replicas' slices of the global batch.
- `losses`: cross-entropy ignoring 255, L2 weight decay.
- `runs`: run folders, `runs/latest`, the CSV log.
- `evaluate.py`, `predict.py`: the commands' earlier paths, kept as aliases of `evaluation/evaluate.py`
  and `evaluation/predict.py`.

Datasets and augmentation live in `data/`, mIoU and predictors in `evaluation/`, configs in `configs/`.
"""
