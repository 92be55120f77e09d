"""`python -m convert.inspect FILE.tflite [--json [FILE]]`: the command's established name for
`python -m convert.summary` (see convert/__init__.py for why this file lives in aliases/)."""

import sys

from convert.summary import main

if __name__ == "__main__":
    sys.exit(main())
