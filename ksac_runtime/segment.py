"""ksac-segment: segment image files, a video or a camera with a `.tflite` file of the KSAC edge model zoo.

    ksac-segment --model model_int8.tflite photo.jpg street.png --out segmented --threads 2
    ksac-segment --model model_int8.tflite --video clip.mp4 --out segmented
    ksac-segment --model model_int8.tflite --camera 0 --frames 300 --out segmented

Each image gives DIR/<stem>_labels.png (an 8-bit grey PNG at the image's size whose pixel values are the
class ids) and DIR/<stem>_overlay.png (the image in the class colours, a legend naming each class present
below it), and one line: the classes present with their share of the pixels, and the milliseconds.
A video or a camera gives DIR/<stem>_overlay.mp4 (DIR/camera<N>_overlay.mp4), the legend over each
frame's corner, a progress line with the frames per second on stderr and one line at the end.

Exit status (docs/cli.md): 0 done; 2 the input or the environment is wrong: a missing file, a file that
is not a model of this project or not an image, a video or camera that does not open, an output that
cannot be written, no GPU for --device gpu (found before any image is segmented, where it can be);
1 the work failed (LiteRT failed while running, a video that could not be written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Callable, Iterator, Sequence, TextIO

import numpy as np

from ksac_runtime.cli import (
    USER_ERROR,
    UserError,
    add_json_flag,
    check_json_path,
    check_output_flag,
    fail,
    stdout_kept_for_json,
    write_json,
)
from ksac_runtime.files import atomic_write_bytes
from ksac_runtime.images import encode_png, is_image_file, read_rgb
from ksac_runtime.palette import DEFAULT_ALPHA
from ksac_runtime.runtime import DEVICES, GpuUnavailable
from ksac_runtime.segmenter import Segmenter

# A video's overlay: MPEG-4 part 2 in an .mp4, which every OpenCV build with a video writer has.
VIDEO_FOURCC, VIDEO_SUFFIX = "mp4v", "_overlay.mp4"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ksac-segment", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, BMP, TIFF, WebP: what OpenCV reads)")
    p.add_argument("--model", required=True, help="a .tflite file exported by this project (it carries its classes, input size and preprocessing)")
    p.add_argument("--out", default=".", metavar="DIR", help="the folder the files are written to, created if missing (default: the current folder)")
    add_json_flag(p, "the report (per image: size, classes present, milliseconds by stage, files written)", instead="the lines")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for LiteRT (default: every core of the machine)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (LiteRT with XNNPACK, default) or gpu (LiteRT's GPU accelerator, the whole model on it, or exit 2)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--video", metavar="FILE", help="a video file (what OpenCV's FFmpeg reads): writes DIR/<stem>_overlay.mp4")
    source.add_argument("--camera", type=int, metavar="N", help="camera N as OpenCV numbers them (/dev/videoN on Linux), until --frames or Ctrl-C: writes DIR/cameraN_overlay.mp4")
    p.add_argument("--frames", type=int, metavar="N", help="at most N frames of --video or --camera (default: the whole video; a camera until Ctrl-C)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"the class colour's share of a pixel in the overlays (default {DEFAULT_ALPHA})")
    args = p.parse_args(argv)
    if not args.images and args.video is None and args.camera is None:
        p.error("nothing to segment: give IMAGE files, --video FILE or --camera N")
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuses, before the model is loaded, every input and output that cannot work (UserError, OSError)."""
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames must be at least 1, got {args.frames}")
    if not 0.0 <= args.alpha <= 1.0:
        raise UserError(f"--alpha must be between 0 and 1, got {args.alpha}")
    check_output_flag("--out", args.out, folder=True)
    check_json_path(args.json)
    stems: dict[str, str] = {}
    for path in args.images:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        if not is_image_file(path):
            raise UserError(f"{path} is not an image (OpenCV reads no image format from its first bytes)")
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise UserError(f"{stems[stem]} and {path} would both write {os.path.join(args.out, stem)}_labels.png: "
                            "segment them into different --out folders")  # fmt: skip
        stems[stem] = path
    if args.video is not None and not os.path.isfile(args.video):
        raise FileNotFoundError(f"video file not found: {args.video}")


def describe_classes(shares: dict[str, float]) -> str:
    """The classes present, largest share first: `background 71.2%, person 20.1%`."""
    return ", ".join(f"{name} {share:.1f}%" for name, share in shares.items())


def segment_image(segmenter: Segmenter, path: str, out: str, alpha: float) -> dict[str, Any]:
    """Segments one image file, writes its label and overlay PNGs; the report's entry for it."""
    image = read_rgb(path)
    labels = segmenter.segment(image)
    timing = segmenter.last_timing
    stem = os.path.join(out, os.path.splitext(os.path.basename(path))[0])
    # Both encoded first, then written: an error leaves neither file half-written.
    labels_png = encode_png(labels)
    overlay_png = encode_png(segmenter.overlay(image, labels, alpha=alpha))
    atomic_write_bytes(stem + "_labels.png", labels_png)
    atomic_write_bytes(stem + "_overlay.png", overlay_png)
    return {"image": path, "height": int(image.shape[0]), "width": int(image.shape[1]),
            "classes": segmenter.class_shares(labels), "ms": timing.to_dict() if timing else None,
            "labels": stem + "_labels.png", "overlay": stem + "_overlay.png"}  # fmt: skip


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, else a line every tenth of the frames
    (every 50 frames when their number is unknown)."""

    def __init__(self, name: str, total: int | None, stream: TextIO | None = None) -> None:
        self.name, self.total, self.stream = name, total, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = max(1, total // 10) if total else 50

    def update(self, done: int, fps: float) -> None:
        of = f"/{self.total} ({100 * done / self.total:.0f}%)" if self.total else ""
        line = f"{self.name}: frame {done}{of}, {fps:.1f} frames/s"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
        elif done % self.every == 0 or done == self.total:
            print(line, file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _frames(capture: Any, limit: int | None) -> Iterator[np.ndarray]:
    """RGB frames of an open cv2.VideoCapture, at most `limit`."""
    import cv2

    count = 0
    while limit is None or count < limit:
        ok, frame = capture.read()
        if not ok:
            return
        count += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def segment_stream(segmenter: Segmenter, capture: Any, name: str, out_path: str, *, total: int | None, limit: int | None,
                   fps: float, alpha: float, log: Callable[[int, float], None]) -> dict[str, Any]:  # fmt: skip
    """Segments the frames of an open capture into an overlay video at `out_path`; the report's entry.

    Ctrl-C ends a camera (or a video) early: what was segmented is written and reported.
    """
    import cv2

    writer = None
    counts = np.zeros(256, np.int64)
    model_ms = 0.0
    frames = 0
    started = time.perf_counter()
    # Written beside it and renamed into place at the end: never a half-written video under its name.
    partial = os.path.join(os.path.dirname(out_path), "." + os.path.basename(out_path) + ".partial.mp4")
    try:
        for frame in _frames(capture, limit):
            labels = segmenter.segment(frame)
            model_ms += segmenter.last_timing.inference_ms if segmenter.last_timing else 0.0
            counts += np.bincount(labels.ravel(), minlength=256)
            picture = cv2.cvtColor(segmenter.overlay(frame, labels, alpha=alpha, legend="inside"), cv2.COLOR_RGB2BGR)
            if writer is None:
                writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (picture.shape[1], picture.shape[0]))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write {out_path}: OpenCV's video writer does not open ({VIDEO_FOURCC} in .mp4)")
            writer.write(picture)
            frames += 1
            log(frames, frames / max(time.perf_counter() - started, 1e-9))
    except KeyboardInterrupt:
        pass  # the frames so far are written
    except BaseException:
        if writer is not None:
            writer.release()
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    if writer is not None:
        writer.release()
    seconds = time.perf_counter() - started
    if frames == 0:
        raise UserError(f"{name}: no frame could be read")
    os.replace(partial, out_path)
    total_pixels = max(1, int(counts.sum()))
    order = sorted((i for i in range(256) if counts[i]), key=lambda i: (-counts[i], i))
    shares = {segmenter.name_of(i): round(100.0 * counts[i] / total_pixels, 2) for i in order}
    return {"source": name, "frames": frames, "frames_per_second": round(frames / seconds, 2),
            "inference_ms_per_frame": round(model_ms / frames, 3), "classes": shares, "overlay": out_path}  # fmt: skip


@contextlib.contextmanager
def _opencv_errors_only() -> Iterator[None]:
    """OpenCV's own warnings off (a camera that is not there makes each backend warn): our error says it."""
    try:
        from cv2.utils import logging as cv_logging
    except ImportError:  # an OpenCV without its logging module: its warnings stay
        yield
        return
    level = cv_logging.getLogLevel()
    cv_logging.setLogLevel(cv_logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv_logging.setLogLevel(level)


def open_capture(args: argparse.Namespace) -> tuple[Any, str, str, int | None, float]:
    """(the open cv2.VideoCapture, its name, the overlay video's path, its frame count or None, its fps).

    Raises:
        UserError: the video or the camera does not open.
    """
    import cv2

    if args.video is not None:
        with _opencv_errors_only():
            capture, name = cv2.VideoCapture(args.video), args.video
        stem = os.path.splitext(os.path.basename(args.video))[0]
        if not capture.isOpened():
            raise UserError(f"{args.video}: OpenCV cannot open it as a video (not a video, or a codec this OpenCV lacks)")
    else:
        with _opencv_errors_only():
            capture = cv2.VideoCapture(args.camera)
        name, stem = f"camera {args.camera}", f"camera{args.camera}"
        if not capture.isOpened():
            raise UserError(f"no camera {args.camera}: OpenCV could not open it (no such device, no permission, or a "
                            "build without a camera backend)")  # fmt: skip
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if args.video is not None else 0
    total = min(count, args.frames) if count > 0 and args.frames else (count or args.frames or None)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return capture, name, os.path.join(args.out, stem + VIDEO_SUFFIX), total, fps if 0 < fps < 1000 else 30.0


def run(args: argparse.Namespace, segmenter: Segmenter, stream: tuple[Any, str, str, int | None, float] | None) -> dict[str, Any]:
    """Segments what the arguments name (`stream`: `open_capture`'s, for --video or --camera), printing a line
    per image or video; the JSON report."""
    os.makedirs(args.out, exist_ok=True)
    report: dict[str, Any] = {
        "model": args.model, "name": segmenter.description.name, "precision": segmenter.description.precision,
        "input_size": list(segmenter.input_size), "device": segmenter.device, "threads": segmenter.threads,
        "images": [], "videos": [],
    }  # fmt: skip
    for path in args.images:
        entry = segment_image(segmenter, path, args.out, args.alpha)
        report["images"].append(entry)
        print(f"{path}: {entry['width']}x{entry['height']}, {entry['ms']['total']:.1f} ms (model {entry['ms']['inference']:.1f}): "
              f"{describe_classes(entry['classes'])} -> {entry['labels']}, {entry['overlay']}", flush=True)  # fmt: skip
    if stream is not None:
        capture, name, out_path, total, fps = stream
        progress = Progress(name, total)
        try:
            entry = segment_stream(segmenter, capture, name, out_path, total=total, limit=args.frames, fps=fps,
                                   alpha=args.alpha, log=progress.update)  # fmt: skip
        finally:
            progress.end()
            capture.release()
        report["videos"].append(entry)
        print(f"{name}: {entry['frames']} frames, {entry['frames_per_second']:.1f} frames/s (model "
              f"{entry['inference_ms_per_frame']:.1f} ms a frame): {describe_classes(entry['classes'])} -> {out_path}", flush=True)  # fmt: skip
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns its exit code (docs/cli.md: 2 the input or environment is wrong, 1 the work failed)."""
    args = parse_args(argv)
    with stdout_kept_for_json(args.json) as stdout:
        try:
            check_args(args)
            segmenter = Segmenter(args.model, threads=args.threads, device=args.device)
            # Opened before anything is written: a video or camera that does not open is an input error.
            stream = open_capture(args) if args.video is not None or args.camera is not None else None
        except GpuUnavailable as error:  # no GPU is the environment's fault: exit 2, as a missing file
            return fail(error, USER_ERROR)
        except (ValueError, OSError) as error:
            return fail(error)
        try:
            report = run(args, segmenter, stream)
        except (ValueError, OSError, RuntimeError) as error:  # ValueError, OSError: 2; RuntimeError: 1
            return fail(error)
        write_json(args.json, report, stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
