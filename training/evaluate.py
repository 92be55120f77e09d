"""`python training/evaluate.py`: the earlier path of `python evaluation/evaluate.py`, kept so that scripts written
for it keep working; same flags, same output (see `python evaluation/evaluate.py --help`)."""

from __future__ import annotations

import sys

from evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
