"""The class colours, at their earlier import path: they live in `ksac_runtime.palette` (VOC's colour map,
colours by class name, the overlay and its legend); the same objects, not a copy."""

from ksac_runtime.palette import NAMED_COLOURS, blend, class_colours, legend_panel, overlay, voc_palette  # noqa: F401
