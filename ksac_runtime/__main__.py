"""`python -m ksac_runtime ...` is `ksac-segment ...`."""

import sys

from ksac_runtime.segment import main

if __name__ == "__main__":
    sys.exit(main())
