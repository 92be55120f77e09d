"""Class colours and overlays: the PASCAL VOC colour map, colours by class name, the image blended with
its labels and a legend naming each class present.

One place for what every picture of a label map uses: `ksac_runtime.Segmenter.overlay` and `ksac-segment`,
`evaluation/predict.py` (its overlay and its palette label PNG), the demo's `overlays.png`, the dataset
fixtures and the Android reference.

Colours: PASCAL VOC's colour map by class index, except that a class NAMED for a colour ("red", "green",
...) is drawn in that colour; VOC's colour of index 3 is olive, which made the `green` class of
`synthetic:colours` olive and its `yellow` class green. The other classes keep their VOC colour (so VOC,
Cityscapes and ADE20K models look as they always did) unless a named class took it, then the next VOC
colour that no class uses.

numpy only, and OpenCV (lazily) for the legend's text.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Colours by name (CSS's basic colours, plus orange and its British spelling of grey): what a class named
# like this is drawn in.
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
    "gray": (128, 128, 128),
    "silver": (192, 192, 192),
    "red": (255, 0, 0),
    "maroon": (128, 0, 0),
    "orange": (255, 165, 0),
    "yellow": (255, 255, 0),
    "olive": (128, 128, 0),
    "lime": (0, 255, 0),
    "green": (0, 160, 0),
    "teal": (0, 128, 128),
    "cyan": (0, 255, 255),
    "aqua": (0, 255, 255),
    "blue": (0, 0, 255),
    "navy": (0, 0, 128),
    "purple": (128, 0, 128),
    "magenta": (255, 0, 255),
    "fuchsia": (255, 0, 255),
    "pink": (255, 192, 203),
    "brown": (139, 69, 19),
}
# The blend of the image with the class colours: the share of the colour.
DEFAULT_ALPHA = 0.5
LEGENDS = ("below", "inside", "none")


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


def class_colours(label_names: Sequence[str] | None = None, n: int = 256) -> np.ndarray:
    """uint8 [max(n, classes), 3] RGB: the colour of class i at row i (see the module's docstring).

    Args:
        label_names: the model's class names (index 0 first); None: VOC's colours by index.
        n: at least this many rows (256: a colour for every uint8 label, as a palette PNG needs).
    """
    names = [str(name).strip().lower() for name in (label_names or ())]
    colours = voc_palette(max(n, len(names), 256))
    named = {i: NAMED_COLOURS[name] for i, name in enumerate(names) if name in NAMED_COLOURS}
    if not named:
        return colours[: max(n, len(names))]
    taken = set(named.values())
    spare = (tuple(int(v) for v in c) for c in voc_palette(4096)[len(names):])
    out = colours.copy()
    for i in range(len(names)):
        if i in named:
            out[i] = named[i]
        elif tuple(int(v) for v in out[i]) in taken:
            out[i] = next(c for c in spare if c not in taken)
        taken.add(tuple(int(v) for v in out[i]))
    return out[: max(n, len(names))]


def blend(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The image with every non-background pixel (label > 0) blended with its class colour.

    Args:
        image: uint8 HxWx3 RGB.
        labels: uint8 HxW class ids at the image's size.
        colours: [classes, 3] RGB, e.g. `class_colours(names)`.
        alpha: the colour's share of a blended pixel.
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels of shape {labels.shape} do not fit an image of {image.shape[0]}x{image.shape[1]}")
    painted = np.asarray(colours)[labels]
    blended = (image.astype(np.float32) * (1 - alpha) + painted * alpha).astype(np.uint8)
    return np.where((labels > 0)[..., None], blended, image)


def _class_name(names: Sequence[str], i: int) -> str:
    return str(names[i]) if i < len(names) else f"class {i}"


def legend_panel(classes: Sequence[int], label_names: Sequence[str], colours: np.ndarray, width: int) -> np.ndarray:
    """A white uint8 RGB panel naming `classes`, each after a swatch of its colour, in rows that wrap at
    `width` pixels (wider where one name needs more); "background only" when `classes` is empty.

    Args:
        classes: the class ids to name (the overlay names those present, background left out).
        label_names: the model's class names; an id past them is named "class N".
        colours: [classes, 3] RGB.
        width: the panel's width in pixels (the image's).
    """
    import cv2

    font, scale, thickness = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (_, text_h), baseline = cv2.getTextSize("Ag", font, scale, thickness)
    line_h, pad, swatch = text_h + baseline + 8, 6, text_h + 2
    entries = [(_class_name(label_names, int(c)), tuple(int(v) for v in colours[int(c)])) for c in classes]
    if not entries:
        entries = [("background only", None)]
    sized = [(name, colour, cv2.getTextSize(name, font, scale, thickness)[0][0] + (swatch + 6 if colour else 0))
             for name, colour in entries]  # fmt: skip
    width = max(int(width), max(w for *_, w in sized) + 2 * pad)
    rows: list[list[tuple[str, tuple[int, int, int] | None, int]]] = [[]]
    used = pad
    for entry in sized:
        if rows[-1] and used + entry[2] > width - pad:
            rows.append([])
            used = pad
        rows[-1].append(entry)
        used += entry[2] + 14
    panel = np.full((len(rows) * line_h + pad, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        x, top = pad, pad + r * line_h
        for name, colour, w in row:
            if colour is not None:
                cv2.rectangle(panel, (x, top + 2), (x + swatch, top + 2 + swatch), colour, -1)
                cv2.rectangle(panel, (x, top + 2), (x + swatch, top + 2 + swatch), (90, 90, 90), 1)
                text_x = x + swatch + 6
            else:
                text_x = x
            cv2.putText(panel, name, (text_x, top + 2 + text_h), font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
            x += w + 14
    return panel


def overlay(
    image: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str] | None = None,
    *,
    alpha: float = DEFAULT_ALPHA,
    legend: str = "below",
    colours: np.ndarray | None = None,
) -> np.ndarray:
    """The image blended with its class colours, with a legend naming each class present.

    Args:
        image: uint8 HxWx3 RGB.
        labels: uint8 HxW class ids at the image's size (`Segmenter.segment`'s).
        label_names: the model's class names (index 0, background, is not blended nor named).
        alpha: the colour's share of a blended pixel.
        legend: "below" (a white panel under the image: the result is taller, and wider where the image is
            too narrow for a name), "inside" (the panel over the image's top-left corner: the image's size,
            for video frames) or "none".
        colours: [classes, 3] RGB (default `class_colours(label_names)`).

    Returns:
        uint8 RGB.
    """
    if legend not in LEGENDS:
        raise ValueError(f"legend must be one of {', '.join(LEGENDS)}, got {legend!r}")
    names = list(label_names or ())
    colours = class_colours(names, int(np.max(labels, initial=0)) + 1) if colours is None else np.asarray(colours)
    out = blend(image, labels, colours, alpha)
    if legend == "none":
        return out
    present = [int(c) for c in np.unique(labels) if c != 0]
    panel = legend_panel(present, names, colours, out.shape[1] if legend == "below" else 1)
    if legend == "inside":
        h, w = min(panel.shape[0], out.shape[0]), min(panel.shape[1], out.shape[1])
        corner = out[:h, :w].astype(np.float32)
        out = out.copy()
        out[:h, :w] = (corner * 0.25 + panel[:h, :w] * 0.75).astype(np.uint8)  # the frame shows through a little
        return out
    if panel.shape[1] > out.shape[1]:
        out = np.pad(out, ((0, 0), (0, panel.shape[1] - out.shape[1]), (0, 0)), constant_values=255)
    return np.vstack([out, panel])
