"""`python training/predict.py`: the earlier path of `python evaluation/predict.py`, kept so that scripts written
for it keep working; same flags, same output (see `python evaluation/predict.py --help`)."""

from __future__ import annotations

import sys

from evaluation.predict import main

if __name__ == "__main__":
    sys.exit(main())
