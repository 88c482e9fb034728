"""Classify a camera stream continuously, with a frames-per-second readout.

`edgelite predict MODEL --camera [SOURCE]`: SOURCE "pi" is the Raspberry Pi camera through picamera2
(Raspberry Pi OS ships it: `sudo apt install python3-picamera2`, and a venv made with
`--system-site-packages` sees it); a number is a USB webcam and anything else a video file or stream
URL, through OpenCV (`pip install opencv-python-headless`). Neither is a dependency of edgelite: where
none is installed or no camera answers, the command says so in one line and exits 2.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .errors import EdgeliteError


def frames(source: str) -> Iterator[np.ndarray]:
    """RGB uint8 frames [H, W, 3] from the Pi camera ("pi") or OpenCV (a device number, file or URL)."""
    if source == "pi":
        yield from _picamera2()
        return
    try:
        import cv2
    except ImportError:
        raise EdgeliteError("reading a camera needs OpenCV (pip install opencv-python-headless), "
                            "or picamera2 for the Pi camera (--camera pi)") from None
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise EdgeliteError(f"no camera or stream at {source!r}")
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _picamera2() -> Iterator[np.ndarray]:
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise EdgeliteError("the Pi camera needs picamera2 (sudo apt install python3-picamera2; a venv needs "
                            "--system-site-packages)") from None
    try:
        camera = Picamera2()
        camera.configure(camera.create_video_configuration(main={"format": "RGB888", "size": (640, 480)}))
        camera.start()
    except Exception as exc:  # picamera2/libcamera raise their own types when no camera is attached
        raise EdgeliteError(f"no Pi camera answered: {exc}") from None
    try:
        while True:
            yield camera.capture_array()[..., ::-1]  # RGB888 is stored B, G, R
    finally:
        camera.stop()


def classify_stream(classifier, stream: Iterable[np.ndarray], top_k: int = 1, limit: int | None = None,
                    say: Callable[[str], None] | None = None) -> int:
    """Classify frames as fast as they come; one line per frame with the frames per second over the last
    30 frames. Returns how many frames were classified."""
    say = say or logging.getLogger(__name__).info
    stamps: deque = deque(maxlen=30)
    count = 0
    for frame in stream:
        predictions = classifier.predict(Image.fromarray(frame), top_k=top_k)
        stamps.append(time.perf_counter())
        count += 1
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        say(f"{fps:5.1f} fps  " + "  ".join(f"{p.label} {p.score:.2f}" for p in predictions))
        if limit and count >= limit:
            break
    return count
