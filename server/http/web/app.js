// deepserve's page: calls the Vision API over HTTP on this same port. No build step.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#008080", "#9a6324", "#800000"];

$("token").value = localStorage.getItem("deepserve-token") || "";
$("token").addEventListener("change", () => localStorage.setItem("deepserve-token", $("token").value));

function headers(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

// One Vision call: the answer, and how long the round trip took.
async function vision(model, task, body, query = "") {
  const started = performance.now();
  const response = await fetch(`/v1/models/${model}/${task}${query}`, {
    method: "POST", body, headers: headers({ "Content-Type": body.type || "image/png" }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  answer.round_trip_ms = performance.now() - started;
  return answer;
}

function meta(answer) {
  return `${answer.round_trip_ms.toFixed(1)} ms round trip · ${answer.server_ms.toFixed(1)} ms in the server · ` +
    `batch ${answer.batch_size} · model's average batch ${answer.average_batch_size.toFixed(2)}`;
}

function showBars(list, labels) {
  list.replaceChildren(...labels.map((x) => {
    const item = document.createElement("li");
    item.innerHTML = `<span class="label"></span><span class="bar"><span></span></span><span class="score"></span>`;
    item.querySelector(".label").textContent = x.label;
    item.querySelector(".bar span").style.width = `${(x.score * 100).toFixed(1)}%`;
    item.querySelector(".score").textContent = `${(x.score * 100).toFixed(1)}%`;
    return item;
  }));
}

function fail(where, error) {
  where.textContent = `error: ${error.message}`;
}

// ---- status ---------------------------------------------------------------------------------
async function status() {
  try {
    const ready = (await fetch("/v2/health/ready")).ok;
    $("status").textContent = ready ? "ready" : "not ready";
    $("status").className = `pill ${ready ? "ok" : "bad"}`;
  } catch {
    $("status").textContent = "unreachable";
    $("status").className = "pill bad";
  }
}
status();
setInterval(status, 5000);

// ---- drawing pad: the top 3 follow the strokes ------------------------------------------------
const pad = $("pad");
const ink = pad.getContext("2d");
let drawing = false;
let dirty = false;
let inFlight = false;

function clearPad() {
  ink.fillStyle = "#000";
  ink.fillRect(0, 0, pad.width, pad.height);
  $("digit-top").replaceChildren();
  $("digit-meta").textContent = "";
}
clearPad();

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  pad.setPointerCapture(event.pointerId);
  ink.strokeStyle = "#fff";
  ink.lineWidth = 20;
  ink.lineCap = ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...point(event));
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  ink.lineTo(...point(event));
  ink.stroke();
  dirty = true;
  classifyDigit();
});
pad.addEventListener("pointerup", () => { drawing = false; dirty = true; classifyDigit(); });
$("clear").addEventListener("click", clearPad);

// At most one request in flight; when it returns and the pad changed, the next goes.
async function classifyDigit() {
  if (inFlight || !dirty) return;
  inFlight = true;
  dirty = false;
  $("digit-top").dataset.state = "busy";
  try {
    const png = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const answer = await vision("mnist", "classify", png, "?top_k=3");
    showBars($("digit-top"), answer.results[0].labels);
    $("digit-meta").textContent = meta(answer);
  } catch (error) {
    fail($("digit-meta"), error);
  } finally {
    inFlight = false;
    if (dirty) classifyDigit();
    else if (!drawing) $("digit-top").dataset.state = "done";
  }
}

// ---- a photo ----------------------------------------------------------------------------------
$("photo-file").addEventListener("change", async () => {
  const file = $("photo-file").files[0];
  if (!file) return;
  $("photo-preview").src = URL.createObjectURL(file);
  $("photo-preview").style.display = "block";
  try {
    const answer = await vision("cifar10_resnet20", "classify", file, "?top_k=3");
    showBars($("photo-top"), answer.results[0].labels);
    $("photo-meta").textContent = meta(answer);
  } catch (error) {
    fail($("photo-meta"), error);
  }
});

// ---- a scene: boxes and the segmentation overlay ---------------------------------------------
const scene = $("scene");
const paint = scene.getContext("2d");
let last = null;

async function openScene(blob) {
  const picture = await createImageBitmap(blob);
  try {
    const [detected, segmented] = await Promise.all([
      vision("ssd", "detect", blob),
      vision("segmentation", "segment", blob, "?mask=png"),
    ]);
    const maskPng = Uint8Array.from(atob(segmented.results[0].mask), (c) => c.charCodeAt(0));
    const mask = await maskPixels(new Blob([maskPng], { type: "image/png" }), picture);
    last = { picture, detections: detected.results[0].detections, mask };
    drawScene();
    const found = last.detections;
    $("scene-count").textContent = `${found.length} digit${found.length === 1 ? "" : "s"} found`;
    $("scene-detections").replaceChildren(...found.map((d) => {
      const chip = document.createElement("li");
      chip.textContent = `${d.label} ${(d.score * 100).toFixed(0)}%`;
      return chip;
    }));
    $("scene-meta").textContent = `detect: ${meta(detected)} — segment: ${meta(segmented)}`;
  } catch (error) {
    fail($("scene-meta"), error);
  }
}

// The mask PNG holds a class index per pixel: read it back as numbers.
async function maskPixels(blob, picture) {
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(picture.width, picture.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  return context.getImageData(0, 0, picture.width, picture.height);
}

function drawScene() {
  if (!last) return;
  const { picture, detections, mask } = last;
  scene.width = picture.width;
  scene.height = picture.height;
  paint.drawImage(picture, 0, 0);
  if ($("overlay").checked) {
    const layer = paint.getImageData(0, 0, scene.width, scene.height);
    for (let i = 0; i < mask.data.length; i += 4) {
      const cls = mask.data[i];
      if (cls === 0) continue;  // background
      const hex = COLORS[(cls - 1) % COLORS.length];
      const rgb = [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));
      for (let c = 0; c < 3; c++) layer.data[i + c] = layer.data[i + c] * 0.45 + rgb[c] * 0.55;
    }
    paint.putImageData(layer, 0, 0);
  }
  paint.lineWidth = Math.max(2, scene.width / 160);
  paint.font = `${Math.max(12, scene.width / 22)}px system-ui, sans-serif`;
  for (const d of detections) {
    const color = COLORS[d.index % COLORS.length];
    const { x1, y1, x2, y2 } = d.box;
    paint.strokeStyle = color;
    paint.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.label} ${(d.score * 100).toFixed(0)}%`;
    const width = paint.measureText(text).width + 8;
    const height = parseInt(paint.font, 10) + 4;
    paint.fillStyle = color;
    paint.fillRect(x1, Math.max(0, y1 - height), width, height);
    paint.fillStyle = "#fff";
    paint.fillText(text, x1 + 4, Math.max(0, y1 - height) + height - 5);
  }
  scene.dataset.boxes = String(detections.length);
}

$("overlay").addEventListener("change", drawScene);
async function openSample() {
  await openScene(await (await fetch("/ui/scene.png")).blob());
}
$("scene-sample").addEventListener("click", openSample);
openSample();
$("scene-file").addEventListener("change", () => {
  const file = $("scene-file").files[0];
  if (file) openScene(file);
});

// ---- the pad read row by row by a sequence model -------------------------------------------
// 28 KServe v2 requests of one row each, one sequence: the server keeps the LSTM's state.
function padRows() {
  const small = document.createElement("canvas");
  small.width = small.height = 28;
  const context = small.getContext("2d");
  context.drawImage(pad, 0, 0, 28, 28);
  const rgba = context.getImageData(0, 0, 28, 28).data;
  return Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, x) => rgba[(r * 28 + x) * 4]));
}

function softmax(logits) {
  const top = Math.max(...logits);
  const weights = logits.map((v) => Math.exp(v - top));
  const total = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / total);
}

function drawRowsSoFar(rows, upTo) {
  const canvas = $("rows-digit");
  const context = canvas.getContext("2d");
  const cell = canvas.width / 28;
  context.fillStyle = "#000";
  context.fillRect(0, 0, canvas.width, canvas.height);
  for (let r = 0; r <= upTo; r++) {
    rows[r].forEach((v, x) => {
      context.fillStyle = `rgb(${v},${v},${v})`;
      context.fillRect(x * cell, r * cell, cell, cell);
    });
  }
  context.fillStyle = "rgba(47,111,237,.35)";
  context.fillRect(0, (upTo + 1) * cell, canvas.width, cell / 2);
}

function drawBelief(chances, row) {
  const canvas = $("rows-belief");
  const context = canvas.getContext("2d");
  const left = 24, top = 20, width = (canvas.width - left) / 10, height = (canvas.height - top) / 28;
  if (row === 0) {
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = "#5d6b82";
    context.font = "12px system-ui";
    for (let d = 0; d < 10; d++) context.fillText(String(d), left + d * width + width / 2 - 3, 14);
    for (let r = 0; r < 28; r += 7) context.fillText(String(r), 2, top + r * height + 9);
  }
  chances.forEach((p, d) => {
    context.fillStyle = `rgba(47,111,237,${Math.max(p, 0.03)})`;
    context.fillRect(left + d * width + 1, top + row * height, width - 2, height - 1);
  });
}

async function readRows() {
  const rows = padRows();
  const id = 1 + Math.floor(Math.random() * 2 ** 31);
  const started = performance.now();
  $("read-rows").disabled = true;
  $("rows-answer").textContent = "";
  $("rows-card").dataset.rows = "0";
  try {
    let chances = [];
    for (let r = 0; r < 28; r++) {
      const body = {
        inputs: [{ name: "rows", datatype: "UINT8", shape: [1, 1, 28], data: rows[r] }],
        parameters: { sequence_id: id, sequence_start: r === 0, sequence_end: r === 27 },
      };
      // x-sequence-id: behind several servers, the proxy sends every row to the same one
      const response = await fetch("/v2/models/lstm_reader/infer", {
        method: "POST", body: JSON.stringify(body),
        headers: headers({ "Content-Type": "application/json", "x-sequence-id": String(id) }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.error || response.statusText);
      chances = softmax(answer.outputs.find((o) => o.name === "logits").data);
      drawRowsSoFar(rows, r);
      drawBelief(chances, r);
      $("rows-card").dataset.rows = String(r + 1);
    }
    const best = chances.indexOf(Math.max(...chances));
    $("rows-answer").textContent = `read: ${best} (${(chances[best] * 100).toFixed(1)}%)`;
    $("rows-meta").textContent = `28 requests, one sequence · ${(performance.now() - started).toFixed(0)} ms in all`;
  } catch (error) {
    fail($("rows-meta"), error);
  } finally {
    $("read-rows").disabled = false;
  }
}
$("read-rows").addEventListener("click", readRows);

// ---- a date through the translator, streamed ------------------------------------------------
// generate_stream answers with server-sent events, one a character, each with its attention
// over the input's bytes: the map grows a row per event.
function drawAttention(source, answer, rows) {
  const canvas = $("translate-map");
  const context = canvas.getContext("2d");
  const bytes = new TextEncoder().encode(source);
  const columns = Math.max(bytes.length, 1);
  const left = 22, top = 22, width = (canvas.width - left) / columns, height = (canvas.height - top) / 11;
  context.clearRect(0, 0, canvas.width, canvas.height);
  context.font = "12px ui-monospace, monospace";
  context.fillStyle = "#5d6b82";
  const decoder = new TextDecoder();
  bytes.forEach((b, i) => context.fillText(decoder.decode(new Uint8Array([b])), left + i * width + width / 2 - 3, 14));
  rows.forEach((weights, r) => {
    context.fillStyle = "#1d2433";
    context.fillText(answer[r] || "", 6, top + r * height + height / 2 + 4);
    for (let i = 0; i < columns; i++) {
      context.fillStyle = `rgba(47,111,237,${Math.max(weights[i] || 0, 0.03)})`;
      context.fillRect(left + i * width + 1, top + r * height, width - 2, height - 1);
    }
  });
}

async function translate() {
  const source = $("translate-text").value;
  const started = performance.now();
  let first = null, answer = "";
  const rows = [];
  $("translate").disabled = true;
  $("translate-answer").textContent = "";
  $("translate-card").dataset.tokens = "0";
  try {
    const response = await fetch("/v2/models/date_translator/generate_stream", {
      method: "POST", body: JSON.stringify({ text_input: source }),
      headers: headers({ "Content-Type": "application/json" }),
    });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const events = buffered.split("\n\n");
      buffered = events.pop();
      for (const event of events) {
        const data = JSON.parse(event.replace(/^data: /, ""));
        if (data.error) throw new Error(data.error);
        first = first ?? performance.now() - started;
        answer += data.text_output;
        rows.push(data.attention[0]);
        $("translate-answer").textContent = answer;
        drawAttention(source, answer, rows);
        $("translate-card").dataset.tokens = String(rows.length);
      }
    }
    $("translate-meta").textContent = `${rows.length} characters streamed · first after ${first.toFixed(1)} ms, ` +
      `last after ${(performance.now() - started).toFixed(1)} ms`;
  } catch (error) {
    fail($("translate-meta"), error);
  } finally {
    $("translate").disabled = false;
  }
}
$("translate").addEventListener("click", translate);
