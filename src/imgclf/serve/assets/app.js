// The page: pick or drop an image, preview it, POST it to /predict, draw the top-5 as bars.
// Plain browser JavaScript, served by the app itself: no framework, no CDN.
"use strict";

const TOP_K = 5;
let numClasses = 0;
const $ = (id) => document.getElementById(id);
const percent = (p) => (100 * p).toFixed(p >= 0.9995 || p < 0.0005 ? 0 : 1) + "%";

// A server started with an API key answers 401 on /model and /predict: ask for the key (once more
// if it is refused), keep it for this browser tab (sessionStorage), send it as a Bearer token.
const KEY_ITEM = "imgclf-api-key";

async function apiFetch(url, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401 || attempt > 1) return response;  // asked, and asked again if refused
    const given = window.prompt(key ? "That API key was refused. API key:" : "This server needs an API key:");
    if (!given) return response;
    sessionStorage.setItem(KEY_ITEM, given.trim());
  }
}

function setStatus(state, text) {
  const pill = $("status");
  pill.dataset.state = state;
  pill.textContent = text;
}

async function loadModelCard() {
  let response;
  try {
    response = await apiFetch("/model");
  } catch (err) {
    setStatus("error", "Server unreachable");
    return;
  }
  if (response.status === 503) {  // still loading: ask again shortly
    setStatus("loading", "Loading model…");
    setTimeout(loadModelCard, 1000);
    return;
  }
  if (response.status === 401) {
    setStatus("error", "API key needed");
    return;
  }
  if (!response.ok) {
    setStatus("error", "Model unavailable");
    return;
  }
  showModelCard(await response.json());
  setStatus("ready", "Ready");
}

function showModelCard(card) {
  $("model-name").textContent = card.name || "";
  $("backbone").textContent = card.backbone || "unknown";
  $("input-size").textContent = `${card.image_size} × ${card.image_size} px`;
  $("format").textContent = card.format || "keras";
  const metrics = card.metrics;
  $("accuracy").textContent = metrics ? percent(metrics.accuracy) : "not recorded";
  if (metrics && metrics.top_k_accuracy != null) {
    $("topk-name").textContent = `Top-${metrics.top_k} accuracy`;
    $("topk-accuracy").textContent = percent(metrics.top_k_accuracy);
  }
  if (metrics && metrics.macro_f1 != null) $("macro-f1").textContent = metrics.macro_f1.toFixed(3);
  if (metrics && metrics.n) $("test-n").textContent = metrics.n;
  numClasses = card.num_classes;
  $("class-count").textContent = card.num_classes;
  const list = $("classes");
  list.replaceChildren(...card.class_names.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    return li;
  }));
}

function showPreview(file) {
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  img.onload = () => {
    // Small images (icons, digits) stay crisp instead of blurring when scaled up.
    img.classList.toggle("pixelated", Math.max(img.naturalWidth, img.naturalHeight) < 128);
  };
  img.onerror = () => {  // not decodable here either: show the drop zone again, not a broken icon
    img.hidden = true;
    $("drop").classList.remove("has-image");
  };
  img.hidden = false;
  $("drop").classList.add("has-image");
  $("filename").textContent = `${file.name} · ${(file.size / 1024).toFixed(1)} KB`;
}

function showError(message) {
  $("result").dataset.state = "error";
  $("top-label").textContent = "";
  $("top-prob").textContent = "";
  $("bars").replaceChildren();
  $("ranking").textContent = "";
  const error = $("error");
  error.textContent = message;
  error.hidden = false;
}

function showPrediction(top) {
  $("error").hidden = true;
  $("top-label").textContent = top[0].label;
  $("top-prob").textContent = `${percent(top[0].probability)} probability`;
  $("ranking").textContent = `Top ${top.length} of ${numClasses || top.length} classes`;
  $("bars").replaceChildren(...top.map((row, rank) => {
    const li = document.createElement("li");
    li.className = rank === 0 ? "bar best" : "bar";
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = row.label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${Math.max(0.5, 100 * row.probability)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent(row.probability);
    li.append(name, track, value);
    return li;
  }));
  $("result").dataset.state = "done";
}

async function classify(file) {
  if (!file) return;
  showPreview(file);
  $("result").dataset.state = "busy";
  $("top-prob").textContent = "Classifying…";
  const body = new FormData();
  body.append("files", file, file.name);
  let response, data;
  try {
    response = await apiFetch(`/predict?top_k=${TOP_K}`, { method: "POST", body });
    data = await response.json();
  } catch (err) {
    showError("The server did not answer.");
    return;
  }
  if (!response.ok) {
    const detail = data.detail || {};
    const reason = typeof detail === "string" ? detail : detail.reason;
    const error = data.error || `HTTP ${response.status}`;
    showError(reason && reason !== error ? `${error}: ${reason}` : error);
    return;
  }
  showPrediction(data.predictions[0].top);
}

function wireDropZone() {
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  }
  for (const type of ["dragleave", "dragend"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    classify(event.dataTransfer.files[0]);
  });
  // A drop that misses the zone must not navigate away to the file.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";  // picking the same file again must fire "change" again
    classify(file);
  });
}

$("curl").textContent = `curl -F files=@image.png ${location.origin}/predict`;
wireDropZone();
loadModelCard();
