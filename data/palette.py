"""The PASCAL VOC colour map, shared by predict.py, the dataset fixtures and the Android reference."""

from __future__ import annotations

import numpy as np


def voc_palette(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map: uint8 [n, 3] RGB, colour of label i at row i."""
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette
