"""One Classifier shared by threads gives what it gives alone; silencing logs never takes other threads' output."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgelite import Classifier
from edgelite.files import find_images
from edgelite.quiet import quiet

from conftest import run_python


@pytest.mark.parametrize("fmt", ["tflite-int8", "onnx-int8", "tflite-fp32"])
def test_threads_sharing_one_classifier_get_single_threaded_answers(artifact, digits, fmt):
    clf = Classifier(artifact[fmt])
    images = find_images([digits])[::40][:20]
    alone = {p: clf.scores(clf.prepare(p)) for p in images}
    work = [images[i % len(images)] for i in range(400)]
    with ThreadPoolExecutor(8) as pool:
        shared = list(pool.map(lambda p: (p, clf.scores(clf.prepare(p))), work))
    assert all(np.array_equal(scores, alone[p]) for p, scores in shared)


def test_predict_batch_equals_a_loop_in_order_and_reports_bad_items(artifact, digits, tmp_path):
    clf = Classifier(artifact["tflite-int8"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    images = find_images([digits])[:30]
    wrong = np.zeros((5, 5, 1), np.float32)  # an array of the wrong shape: reported like a bad file
    items = images[:10] + [bad] + images[10:] + [wrong]
    results = list(clf.predict_batch(items, top_k=3, workers=3))
    assert [r.source is item for r, item in zip(results, items)] == [True] * len(items)
    assert results[10].predictions is None and "bad.png" in results[10].error
    assert results[-1].predictions is None and "shape" in results[-1].error
    loop = [clf.predict(p, top_k=3) for p in images]
    assert [r.predictions for r in results[:10] + results[11:-1]] == loop


def test_quiet_leaves_other_threads_output_alone(capfd):
    """Another thread writes to stderr while quiet() is entered and left: every line it wrote arrives."""
    stop = threading.Event()
    written = []

    def chatter():
        n = 0
        while not stop.is_set():
            os.write(2, f"line {n}\n".encode())
            written.append(n)
            n += 1

    def wrote_more_than(count: int) -> bool:
        deadline = time.monotonic() + 10
        while len(written) <= count and time.monotonic() < deadline:
            time.sleep(0.001)
        return len(written) > count

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        for _ in range(20):
            with quiet():
                os.write(2, b"")
                assert wrote_more_than(len(written))  # the other thread wrote while quiet() was in force
    finally:
        stop.set()
        thread.join()
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("line ")]
    assert len(written) >= 20 and len(lines) == len(written)


def test_quiet_silences_when_alone():
    """In a fresh process (this one may hold threads other tests left: Ray's, a server's)."""
    code = ("import os\nfrom edgelite.quiet import quiet\nwith quiet():\n    os.write(2, b'hidden\\n')\n"
            "    os.write(1, b'hidden\\n')\nos.write(2, b'shown\\n')\n")
    done = run_python("-c", code, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "hidden" not in done.stdout + done.stderr and "shown" in done.stderr
