"""The page `edgelite serve` shows at GET /: take or pick a photo, see its top-5.

Plain HTML, CSS and JavaScript in one string, nothing fetched from elsewhere (the device may be
offline). Without JavaScript the form still posts to /classify and the browser shows the JSON.
With it: the file input (`capture="environment"` opens a phone's back camera) posts on change;
"Use camera" appears where the browser offers getUserMedia (localhost or HTTPS) and snapshots the
video to a canvas. Results are drawn as horizontal bars: label, percentage.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgelite classifier</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 40rem; color: #222; }
  h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
  #model { color: #666; font-size: .9rem; margin: 0 0 1rem; }
  form, .buttons { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
  label.pick, button { font: inherit; padding: .7rem 1rem; border: 0; border-radius: .5rem;
                       background: #1565c0; color: #fff; cursor: pointer; }
  button.secondary { background: #546e7a; }
  input[type=file] { position: absolute; left: -9999px; }
  .js-off input[type=file] { position: static; }
  #camera { display: none; margin-top: 1rem; }
  #camera video { width: 100%; border-radius: .5rem; background: #000; }
  #preview { display: none; max-width: 100%; max-height: 50vh; margin-top: 1rem; border-radius: .5rem; }
  #status { margin: 1rem 0 .5rem; min-height: 1.4em; }
  #status.error { color: #b71c1c; }
  .row { margin: .45rem 0; }
  .row .name { display: flex; justify-content: space-between; gap: 1rem; font-size: .95rem; }
  .row .name span:first-child { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .row .name span:last-child { flex-shrink: 0; font-variant-numeric: tabular-nums; }
  .track { height: .8rem; background: #e3e8ee; border-radius: .4rem; overflow: hidden; }
  .bar { height: 100%; background: #43a047; border-radius: .4rem; min-width: 2px; }
</style>
</head>
<body class="js-off">
<h1>edgelite classifier</h1>
<p id="model"></p>
<form id="form" action="/classify" method="post" enctype="multipart/form-data">
  <label class="pick" for="file">Take or choose a photo</label>
  <input id="file" type="file" name="image" accept="image/*" capture="environment">
  <noscript><button type="submit">Classify</button></noscript>
  <button id="start" type="button" class="secondary" hidden>Use camera</button>
</form>
<div id="camera">
  <video id="video" autoplay playsinline muted></video>
  <div class="buttons"><button id="snap" type="button">Snapshot</button>
  <button id="stop" type="button" class="secondary">Close camera</button></div>
</div>
<img id="preview" alt="the photo sent">
<p id="status"></p>
<div id="results"></div>
<script>
"use strict";
document.body.classList.remove("js-off");
const $ = (id) => document.getElementById(id);
let stream = null;

fetch("/model").then((r) => r.json()).then((m) => {
  $("model").textContent = `${m.model}: ${m.classes} classes, ${m.backend}`;
}).catch(() => {});

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function show(predictions) {
  const results = $("results");
  results.replaceChildren();
  for (const p of predictions) {
    const row = document.createElement("div");
    row.className = "row";
    const name = document.createElement("div");
    name.className = "name";
    const label = document.createElement("span");
    label.textContent = p.label;
    const pct = document.createElement("span");
    pct.textContent = (100 * p.score).toFixed(1) + "%";
    name.append(label, pct);
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.max(0, Math.min(100, 100 * p.score)) + "%";
    track.append(bar);
    row.append(name, track);
    results.append(row);
  }
}

async function classify(blob) {
  $("preview").src = URL.createObjectURL(blob);
  $("preview").style.display = "block";
  $("results").replaceChildren();
  status("Classifying...");
  const body = new FormData();
  body.append("image", blob, blob.name || "photo.jpg");
  try {
    const response = await fetch("/classify?top_k=5", { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    show(answer.predictions);
    status(`${answer.model}: ${answer.ms.toFixed(1)} ms on the device`);
  } catch (err) {
    status("Error: " + err.message, true);
  }
}

$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  if ($("file").files[0]) classify($("file").files[0]);
});
$("file").addEventListener("change", () => {
  if ($("file").files[0]) classify($("file").files[0]);
});

function closeCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("camera").style.display = "none";
}

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  $("start").hidden = false;
  $("start").addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      $("video").srcObject = stream;
      $("camera").style.display = "block";
    } catch (err) {
      status("Camera not available: " + err.message, true);
    }
  });
  $("stop").addEventListener("click", closeCamera);
  $("snap").addEventListener("click", () => {
    const video = $("video");
    if (!video.videoWidth) return;
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => { if (blob) classify(blob); }, "image/jpeg", 0.92);
  });
}
</script>
</body>
</html>
"""
