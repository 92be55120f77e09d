"""A procedurally generated, seeded segmentation dataset with 21 classes (0 = background).

Each foreground class is a (colour family, shape) pair: 4 hue families (red,
yellow, green, blue) x 5 shapes (disc, square, triangle, star, cross) = 20 classes.
Colour narrows a pixel down to 5 classes; telling them apart needs the object's
outline, which needs context that grows with the object: sizes span about 14x
(circumradius 7 to 96 px, log-uniform) within and across images. Colour alone does not solve it:
objects carry a random texture (solid, stripes, checkerboard, dots) in two shades
of their family, and the background holds clutter (lines, small blobs) in the
same saturated colours, labelled background. The background itself is a
desaturated, low-contrast pattern; every image gets Gaussian noise and a blur.

The families are chosen so that a from-scratch MobileNetV2 learns the data on a
2-core CPU within minutes (the first version, with texture as the class, did
not leave the predict-background floor in 20 minutes).

Every sample is a pure function of (split seed, index): no files, no state.
"""

from __future__ import annotations

import cv2
import numpy as np

SHAPES = ("disc", "square", "triangle", "star", "cross")
# Hue family centres in degrees; an object's hue is drawn within +-HUE_JITTER of its family's.
FAMILIES = {"red": 0.0, "yellow": 58.0, "green": 140.0, "blue": 235.0}
HUE_JITTER = 14.0
TEXTURES = ("solid", "stripes", "checker", "dots")
LABEL_NAMES = ["background"] + [f"{f}_{s}" for f in FAMILIES for s in SHAPES]
NUM_CLASSES = len(LABEL_NAMES)  # 21
# The same images with the colour family as the class (`--data synthetic:colours`): 5 classes that a
# from-scratch model learns in a few hundred steps, for `make demo`'s picture within minutes.
COLOUR_LABEL_NAMES = ["background", *FAMILIES]
COLOUR_LABELS = np.array([0, *(1 + (k - 1) // len(SHAPES) for k in range(1, NUM_CLASSES))] + [255] * (256 - NUM_CLASSES), np.uint8)

IMAGE_SIZE = 256
SPLIT_SIZES = {"train": 2000, "val": 200}
# Distinct seed spaces so that no val image is a train image.
SPLIT_SEEDS = {"train": 1_000_003, "val": 7_000_001}

MIN_RADIUS, MAX_RADIUS = 7, 96


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray | None:
    """Vertices of `shape` (None for the disc, drawn as a circle) of circumradius r."""
    if shape == "disc":
        return None
    if shape == "square":
        t = angle + np.arange(4) * np.pi / 2 + np.pi / 4
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif shape == "star":
        t = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radii[:, None]
    else:  # cross: a plus sign with arms of width 0.5 r
        a, b = r, 0.25 * r
        base = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b], [-a, -b], [-b, -b]])
        c, s = np.cos(angle), np.sin(angle)
        pts = base @ np.array([[c, s], [-s, c]])
    return (pts + [cx, cy]).round().astype(np.int32)


def _texture(texture: str, h: int, w: int, rng: np.random.RandomState) -> np.ndarray:
    """A float mask in [0, 1] of shape (h, w): 1 where the texture's second colour shows."""
    if texture == "solid":
        return np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if texture == "stripes":
        period = rng.uniform(4, 9)
        return ((u / period) % 1.0 < 0.5).astype(np.float32)
    if texture == "checker":
        period = rng.uniform(5, 10)
        return (((u // period) + (v // period)) % 2).astype(np.float32)
    period = rng.uniform(6, 11)  # dots
    du = (u % period) - period / 2
    dv = (v % period) - period / 2
    return (du * du + dv * dv < (0.28 * period) ** 2).astype(np.float32)


def _hsv_to_rgb(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    """One colour as float RGB in [0, 255]."""
    hsv = np.array([[[hue_deg % 360.0, saturation, value]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255.0


def _family_colour(family: str, rng: np.random.RandomState) -> np.ndarray:
    """A saturated colour of `family` (hue within HUE_JITTER of the family's centre)."""
    hue = FAMILIES[family] + rng.uniform(-HUE_JITTER, HUE_JITTER)
    return _hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0))


def _shade_pair(family: str, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Two shades of one family: the texture's two colours."""
    base = _family_colour(family, rng)
    return base, base * rng.uniform(0.45, 0.75)


def _grey_pair(rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """Two close, desaturated colours: the background's pattern."""
    hue, value = rng.uniform(0, 360), rng.uniform(0.25, 0.9)
    a = _hsv_to_rgb(hue, rng.uniform(0.0, 0.25), value)
    return a, a * rng.uniform(0.75, 0.9)


def _paint(
    canvas: np.ndarray, region: np.ndarray, texture: str, colours: tuple[np.ndarray, np.ndarray], rng: np.random.RandomState
) -> None:
    """Paints `texture` in the two `colours` where `region` (bool HxW) is set, in place."""
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pattern = _texture(texture, y1 - y0, x1 - x0, rng)[..., None]
    a, b = colours
    patch = (1 - pattern) * a + pattern * b
    sub = region[y0:y1, x0:x1]
    canvas[y0:y1, x0:x1][sub] = patch[sub]


def _radius(rng: np.random.RandomState) -> float:
    # Log-uniform: as many small objects as large ones, MIN_RADIUS to MAX_RADIUS (7 to 96 px, about 14x).
    return float(np.exp(rng.uniform(np.log(MIN_RADIUS), np.log(MAX_RADIUS))))


def generate(seed: int, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3 RGB, mask uint8 HxW) sample, a pure function of `seed`."""
    rng = np.random.RandomState(seed % (2**32))
    canvas = np.empty((size, size, 3), np.float32)
    everywhere = np.ones((size, size), bool)
    families = list(FAMILIES)
    # Background: a desaturated, low-contrast pattern of any texture, so textures alone do not mean "object".
    _paint(canvas, everywhere, TEXTURES[rng.randint(len(TEXTURES))], _grey_pair(rng), rng)
    mask = np.zeros((size, size), np.uint8)

    # Clutter in the objects' own colours, labelled background: colour alone does not mean "object".
    for _ in range(rng.randint(4, 14)):
        colour = tuple(float(c) for c in _family_colour(families[rng.randint(len(families))], rng))
        if rng.rand() < 0.5:
            p1 = tuple(int(v) for v in rng.randint(0, size, 2))
            p2 = tuple(int(v) for v in rng.randint(0, size, 2))
            cv2.line(canvas, p1, p2, colour, int(rng.randint(1, 4)), cv2.LINE_AA)
        else:
            centre = tuple(int(v) for v in rng.randint(0, size, 2))
            axes = (int(rng.randint(2, 9)), int(rng.randint(2, 9)))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)

    # Objects, drawn back to front; later ones occlude earlier ones.
    for _ in range(rng.randint(3, 9)):
        cls = rng.randint(1, NUM_CLASSES)
        family, shape = families[(cls - 1) // len(SHAPES)], SHAPES[(cls - 1) % len(SHAPES)]
        texture = TEXTURES[rng.randint(len(TEXTURES))]
        r = _radius(rng)
        cx, cy = rng.uniform(-0.2 * r, size + 0.2 * r, 2)
        region = np.zeros((size, size), np.uint8)
        pts = _shape_polygon(shape, cx, cy, r, rng.uniform(0, 2 * np.pi))
        if pts is None:
            cv2.circle(region, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1)
        else:
            cv2.fillPoly(region, [pts], 1)
        region = region.astype(bool)
        _paint(canvas, region, texture, _shade_pair(family, rng), rng)
        mask[region] = cls

    canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.3, 1.0))
    canvas += rng.normal(0, rng.uniform(4, 14), canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8), mask
