"""`edgelite serve`: real HTTP requests against the tiny CNN's int8 TFLite artifact.

The server runs in-process on a free port in a background thread (one per module), or as
`python -m edgelite.cli serve` in a subprocess for the signal tests.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from edgelite import Classifier
from edgelite.serve import ClassifierServer

from conftest import python_command, skip_external

MAX_BYTES = 300_000


@pytest.fixture(scope="module")
def model(artifact) -> Path:
    return Path(artifact["tflite-int8"])


@pytest.fixture(scope="module")
def clf(model) -> Classifier:
    return Classifier(model)


@pytest.fixture(scope="module")
def server(clf):
    """An in-process server on a free port sharing `clf` with the test; yields it."""
    srv = ClassifierServer(("127.0.0.1", 0), clf, max_bytes=MAX_BYTES)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def photos(digits) -> list[bytes]:
    """One digit image of each class, as PNG bytes, and a few as JPEG at 10x the size."""
    pngs = [sorted(folder.glob("*.png"))[3].read_bytes() for folder in sorted(digits.iterdir())]
    jpegs = []
    for data in pngs[:3]:
        out = io.BytesIO()
        Image.open(io.BytesIO(data)).resize((240, 240)).save(out, "JPEG", quality=90)
        jpegs.append(out.getvalue())
    return pngs + jpegs


def request(srv, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            length: str | None = "auto") -> tuple[int, dict]:
    """One HTTP request with full control of the headers; -> (status, JSON answer)."""
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if length == "auto" and body is not None:
            length = str(len(body))
        if length not in (None, "auto"):
            conn.putheader("Content-Length", length)
        conn.endheaders(body)
        response = conn.getresponse()
        payload = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json"), payload[:200]
        return response.status, json.loads(payload)
    finally:
        conn.close()


def multipart(fields: dict[str, bytes], boundary: str = "edgeliteTestBoundary7MA4YWxk") -> tuple[bytes, dict]:
    """A multipart/form-data body as a browser sends it (files with a name and a type)."""
    out = b""
    for name, data in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def classify(srv, image: bytes, top_k: int | None = None, form: bool = False) -> tuple[int, dict]:
    path = "/classify" + (f"?top_k={top_k}" if top_k is not None else "")
    if form:
        body, headers = multipart({"image": image})
        return request(srv, "POST", path, body, headers)
    return request(srv, "POST", path, image, {"Content-Type": "image/png"})


def expected(clf, image: bytes, k: int = 5) -> list[dict]:
    return [p._asdict() for p in clf.predict(image, k)]


def png_header(width: int, height: int) -> bytes:
    """A valid PNG that claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_multipart_and_raw_uploads_give_the_predictions_of_classifier_predict(server, clf, photos):
    for image in photos:
        want = expected(clf, image)
        for form in (False, True):
            status, answer = classify(server, image, form=form)
            assert status == 200, answer
            assert answer["predictions"] == want
            assert answer["model"] == clf.path.name and answer["ms"] > 0


def test_top_k(server, clf, photos):
    for k in (1, 3, clf.classes):
        status, answer = classify(server, photos[0], top_k=k)
        assert status == 200 and answer["predictions"] == expected(clf, photos[0], k)
    status, answer = classify(server, photos[0])
    assert len(answer["predictions"]) == 5
    for bad in ("0", str(clf.classes + 1), "-1", "2.5", "abc", ""):
        status, answer = request(server, "POST", f"/classify?top_k={bad}", photos[0])
        assert status == 400 and "top_k" in answer["error"], (bad, answer)


def test_health_and_model(server, clf, photos):
    status, before = request(server, "GET", "/health")
    assert status == 200 and before["status"] == "ok" and before["uptime_s"] >= 0
    classify(server, photos[0])
    request(server, "GET", "/nowhere")
    status, after = request(server, "GET", "/health")
    assert after["requests"] == before["requests"] + 3  # the /health call itself is counted once answered
    assert after["errors"] == before["errors"] + 1

    status, info = request(server, "GET", "/model")
    assert status == 200
    assert info["model"] == clf.path.name and info["classes"] == clf.classes == 10
    assert info["labels"] == clf.labels
    assert info["preprocess"] == json.loads(json.dumps(clf.spec.to_dict()))
    assert info["backend"] == clf.backend.version
    assert info["input"]["shape"][1:] == list(clf.input.shape[1:]) and info["input"]["dtype"] == "int8"
    assert info["output"]["shape"][-1] == 10
    assert info["quantization"] == clf.metadata["quantization"] and "top1_agreement" in info["parity"]
    verified = info["verified_here"]  # the check set run again on this machine when the service starts
    assert verified["images"] == 24 and verified["same_top1_as_export"] == 1.0 and verified["passed"] is True


def bad_uploads(photos: list[bytes]) -> list[tuple[str, int, dict]]:
    """30 bad requests: (what, expected status, request arguments)."""
    rng = random.Random(0)
    png, jpeg = photos[0], photos[-1]
    text = b"name,score\nsome text that is not an image\n" * 20
    bomb = png_header(20000, 20000)
    form = lambda **fields: dict(zip(("body", "headers"), multipart(fields)))  # noqa: E731
    raw = lambda body, **kw: {"body": body, **kw}  # noqa: E731
    cases = [
        ("empty body", 400, raw(b"")),
        ("empty image field", 400, form(image=b"")),
        ("no Content-Length", 411, raw(b"", length=None)),
        ("Content-Length not a number", 400, raw(b"abc", length="abc")),
        ("chunked body", 411, raw(b"3\r\nabc\r\n0\r\n\r\n", length=None, headers={"Transfer-Encoding": "chunked"})),
        *[(f"{n} random bytes", 422, raw(rng.randbytes(n))) for n in (1, 100, 5000, 100_000)],
        ("random bytes in a form", 422, form(image=rng.randbytes(2000))),
        *[(f"PNG cut at {f:.0%}", 422, raw(png[:int(len(png) * f)])) for f in (0.1, 0.5, 0.9)],
        *[(f"JPEG cut at {f:.0%}", 422, raw(jpeg[:int(len(jpeg) * f)])) for f in (0.05, 0.5, 0.9)],
        ("PNG header claiming 20000x20000", 413, raw(bomb)),
        ("the same bomb in a form", 413, form(image=bomb)),
        ("over the size limit", 413, raw(b"\xff" * (MAX_BYTES + 1))),
        ("over the size limit in a form", 413, form(image=b"\0" * MAX_BYTES)),
        ("a text file", 422, raw(text, headers={"Content-Type": "text/plain"})),
        ("a text file in a form", 422, form(image=text)),
        ("form without an image field", 400, form(photo=png)),
        ("form without a boundary", 400, raw(png, headers={"Content-Type": "multipart/form-data"})),
        ("form cut before its end", 400, {**form(image=png), "body": form(image=png)["body"][:-40]}),
        ("top_k=0", 400, {**raw(png), "path": "/classify?top_k=0"}),
        ("top_k=many", 400, {**raw(png), "path": "/classify?top_k=99999"}),
        ("GET /classify", 405, {"method": "GET"}),
        ("DELETE /classify", 405, {"method": "DELETE"}),
        ("POST to an unknown path", 404, {**raw(png), "path": "/upload"}),
    ]
    assert len(cases) == 30
    return cases


def test_bad_uploads_get_4xx_json_errors_and_the_service_goes_on(server, clf, photos):
    import logging

    class Lines(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())


    status, before = request(server, "GET", "/health")
    lines, collect, logger = [], Lines(), logging.getLogger("edgelite.serve")
    logger.addHandler(collect)  # the CLI shows the service's log on stderr; here it is collected
    for what, want, args in bad_uploads(photos):
        args = dict(args)
        method, path = args.pop("method", "POST"), args.pop("path", "/classify")
        status, answer = request(server, method, path, **args)
        assert status == want, (what, status, answer)
        assert isinstance(answer["error"], str) and answer["error"] and "\n" not in answer["error"], what
        assert "Traceback" not in answer["error"]
    logger.removeHandler(collect)
    err = "\n".join(lines)
    assert len(lines) == 30 and all(line.startswith("edgelite serve: ") for line in lines), err
    assert "Traceback" not in err
    status, answer = classify(server, photos[1], form=True)
    assert status == 200 and answer["predictions"] == expected(clf, photos[1])
    status, after = request(server, "GET", "/health")
    assert after["errors"] == before["errors"] + 30


def test_error_messages_name_the_problem(server, photos):
    assert "pixel limit" in request(server, "POST", "/classify", png_header(20000, 20000))[1]["error"]
    assert "byte limit" in request(server, "POST", "/classify", b"\0" * (MAX_BYTES + 1))[1]["error"]
    assert "truncated" in request(server, "POST", "/classify", photos[-1][:len(photos[-1]) // 2])[1]["error"]
    assert "'image'" in request(server, "POST", "/classify", *multipart({"photo": photos[0]}))[1]["error"]


def test_concurrent_clients_get_the_single_threaded_answers(server, clf, photos):
    want = [expected(clf, image) for image in photos]
    failures: list = []

    def client(n: int) -> None:
        for i in range(25):
            j = (n * 25 + i) % len(photos)
            try:
                status, answer = classify(server, photos[j], form=bool(i % 2))
                if status != 200 or answer["predictions"] != want[j]:
                    failures.append((n, i, status, answer))
            except Exception as exc:  # noqa: BLE001 - a connection failure is a failure too
                failures.append((n, i, repr(exc)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]


def test_page(server):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    conn.request("GET", "/")
    response = conn.getresponse()
    page = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert '<form id="form" action="/classify" method="post" enctype="multipart/form-data">' in page
    assert 'type="file" name="image" accept="image/*" capture="environment"' in page
    assert "getUserMedia" in page and "fetch(\"/classify" in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere: the device may be offline


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_service_cleanly(model, photos, signum):
    process = subprocess.Popen(python_command("-m", "edgelite.cli", "serve", model, "--port", "0"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("edgelite serve: http://127.0.0.1:"), (line, process.stderr.read())
        assert "10 classes" in line and model.name in line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/classify", photos[0])
        assert conn.getresponse().status == 200
        conn.close()
        start = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - start < 5
        err = process.stderr.read()
        assert "Traceback" not in err and "stopped after 1 requests (0 errors)" in err, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def chromium() -> str | None:
    """A Chromium for playwright: the system's, else playwright's own download."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
        return path if os.path.exists(path) else None
    except Exception:  # noqa: BLE001 - no playwright, or no browser for it
        return None


def test_page_in_a_headless_browser(server, clf, digits, tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed")
    executable = chromium()
    if executable is None:
        skip_external("no Chromium executable (system chromium or `playwright install chromium`)")
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "seven.png"
    Image.open(sorted((digits / sorted(os.listdir(digits))[7]).glob("*.png"))[0]).resize((240, 240)).save(photo)
    want = clf.predict(photo.read_bytes(), 5)
    url = "http://%s:%d/" % server.server_address[:2]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's screen
            page.goto(url)
            page.set_input_files("input[type=file]", str(photo))
            page.wait_for_selector("#results .row:nth-child(5)", timeout=15_000)
            rows = page.locator("#results .row")
            assert rows.count() == 5 and page.locator("#results .bar").count() == 5
            assert rows.nth(0).locator(".name span").first.inner_text() == want[0].label
            percent = rows.nth(0).locator(".name span").nth(1).inner_text()
            assert percent == f"{100 * want[0].score:.1f}%"
            assert "Error" not in page.locator("#status").inner_text()
            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)

            # the camera path: Chromium's fake camera -> video -> snapshot on a canvas -> blob -> /classify
            page.click("#start")
            page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=15_000)
            page.evaluate("document.getElementById('results').replaceChildren()")
            page.click("#snap")
            page.wait_for_selector("#results .row:nth-child(5)", timeout=15_000)
            assert "ms on the device" in page.locator("#status").inner_text()
        finally:
            browser.close()
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multipart_parts_are_cut_exactly():
    """Binary payloads holding CRLF and dashes, quoted boundaries, preamble, padding: the bytes of `image` come back
    as email's own (slow) parser reads them."""
    from email.parser import BytesParser
    from email.policy import HTTP

    from edgelite.http_request import image_from_multipart

    rng = random.Random(0)
    for n in range(60):
        data = rng.randbytes(n * 53) + b"\r\n--\r\n\r\n" + rng.randbytes(n % 7)
        boundary = rng.choice(["simple", "----WebKitFormBoundaryx7MA4YWxkTrZu0gW", "with space'(q)"])
        content_type = f'multipart/form-data; boundary="{boundary}"'
        body = (rng.choice([b"", b"a preamble\r\n"]) + f"--{boundary}  \r\n".encode()
                + b'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n' + f"--{boundary}\r\n".encode()
                + b'Content-Disposition: form-data; name="image"; filename="p.bin"\r\nContent-Type: image/png\r\n\r\n'
                + data + f"\r\n--{boundary}--\r\nepilogue".encode())
        reference = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        assert [p.get_payload(decode=True) for p in reference.iter_parts()][1] == data
        assert image_from_multipart(body, content_type) == data
    assert image_from_multipart(b"--b\r\nContent-Disposition: form-data; name*=utf-8''image\r\n\r\nxy\r\n--b--",
                                "multipart/form-data; boundary=b") == b"xy"
