"""TFLite export: the KSAC-aware converter and what it uses, one job per module.

- `to_tflite.py`: the command (`python convert/to_tflite.py --help`).
- `export`: `export_tflite(model, precision)`: converter settings and the steps in order, the report.
- `graph`: the Keras model as the converter should see it (batch-1 clone, KSAC pyramid unrolled).
- `tflite_file`: reading and editing the flatbuffer (op histogram, shared kernel buffer, metadata entries).
- `parity`: the file against Keras on real images, and on LiteRT's GPU accelerator.
- `activation_ranges`: QAT's activation ranges instead of calibrated ones.
- `tflite_metadata`: the standard TFLite Metadata that MediaPipe and the Task Library read.
- `summary`: what a file holds (`python -m convert.inspect FILE`).
- `export_report`: the side-by-side report table.
"""

import os

# `python -m convert.inspect` (the command's name since it was added) is served from aliases/: a file
# named inspect.py in this folder would shadow the standard library's `inspect` whenever
# `python convert/to_tflite.py` puts this folder first on sys.path.
__path__.append(os.path.join(os.path.dirname(__file__), "aliases"))
