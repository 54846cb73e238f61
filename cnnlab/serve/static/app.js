// The page talks only to the server it came from; nothing is loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let models = [];
// The cards of the other tasks, by task name; each is a script of its own loaded after this one.
window.cnnlabTasks = {};

// For those cards: the section with this id, made from `html` where the page lacks it (so that a task's
// card needs only its script line in index.html).
window.cnnlabCard = function (id, html) {
  let card = $(id);
  if (!card) {
    card = document.createElement("section");
    card.className = "answer";
    card.id = id;
    card.innerHTML = html;
    document.querySelector("main").appendChild(card);
  }
  return card;
};

// POST `body` to `endpoint`: the answer's result, or null once the error is in the status line and
// `card` hidden.
window.cnnlabAsk = async function (endpoint, body, card, doing) {
  $("status").textContent = doing;
  const r = await fetch(endpoint, { method: "POST", body });
  if (r.ok) return (await r.json()).result;
  card.hidden = true;
  let text = `${r.status} ${r.statusText}`;
  try { text = (await r.json()).error_msg || text; } catch (e) { /* keep the status line */ }
  $("status").textContent = text;
  return null;
};

function setStatus(text, isError = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", isError);
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${body.error_msg} (${body.error_code}, HTTP ${response.status})`;
  } catch (e) {
    return `HTTP ${response.status}`;
  }
}

function showModelInfo() {
  const m = models.find((x) => x.name === $("model").value);
  if (!m) return;
  const acc = m.accuracy == null ? "accuracy not recorded" : `test accuracy ${(100 * m.accuracy).toFixed(2)}%`;
  $("model-info").textContent =
    `${m.architecture} · input ${m.input_size.join("×")} · ${m.num_classes} classes · ${acc}`;
  $("top-k").max = m.num_classes;
}

async function loadModels() {
  const r = await fetch("/v1/models");
  if (!r.ok) { setStatus(await errorText(r), true); return; }
  models = (await r.json()).models;
  const select = $("model");
  clear(select);
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.architecture})`;
    select.appendChild(o);
  }
  showModelInfo();
  setStatus("Ready: choose or drop an image.");
}

function form(file) {
  const f = new FormData();
  f.append("image", file, file.name || "image");
  f.append("model", $("model").value);
  if ($("invert").checked) f.append("invert", "true");
  return f;
}

function showWarnings(notes) {
  const box = $("warnings");
  clear(box);
  for (const note of notes || []) {
    const li = document.createElement("li");
    li.textContent = note;
    box.appendChild(li);
  }
  box.hidden = !(notes && notes.length);
}

function showResults(answer) {
  const list = $("results");
  clear(list);
  answer.result.forEach((item) => {
    const li = document.createElement("li");
    li.dataset.keyword = item.keyword;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = item.keyword;
    const root = document.createElement("span");
    root.className = "root";
    root.textContent = item.root;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * item.score).toFixed(1)}%`;
    track.appendChild(bar);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `${(100 * item.score).toFixed(2)}%`;
    li.append(label, root, track, score);
    list.appendChild(li);
  });
  const best = answer.result[0];
  $("top1").textContent = best.keyword;
  $("top1-root").textContent = best.root;
  $("timing").textContent = `model ${answer.model} · ${answer.time_ms} ms · log_id ${answer.log_id}`;
}

function showCam(view) {
  $("model-view").src = view.input_png;
  $("cam").src = view.cam_png;
  $("cam-caption").textContent = `Grad-CAM for “${view.keyword}”`;
  const box = $("features");
  clear(box);
  for (const stage of view.feature_maps) {
    const fig = document.createElement("figure");
    fig.className = "stage";
    const img = document.createElement("img");
    img.className = "pixels";
    img.src = stage.png;
    img.alt = `feature maps of ${stage.name}`;
    const cap = document.createElement("figcaption");
    cap.textContent = `${stage.name} · ${stage.shape.join("×")}`;
    const tiles = document.createElement("ol");
    tiles.className = "tiles";
    for (const t of stage.tiles || []) {
      const li = document.createElement("li");
      li.dataset.channel = t.channel;
      li.textContent = `channel ${t.channel}: ${t.min.toFixed(2)} … ${t.max.toFixed(2)}`;
      tiles.appendChild(li);
    }
    fig.append(cap, img, tiles);
    box.appendChild(fig);
  }
  $("cam-status").textContent = "";
}

async function classify(file) {
  if (!file) return;
  const chosen = models.find((m) => m.name === $("model").value);
  document.querySelectorAll("section.answer").forEach((card) => { card.hidden = true; });  // no stale card of another model
  // Each task's card registers itself in window.cnnlabTasks under the task's name (segment.js, detect.js, ...).
  const handler = chosen && window.cnnlabTasks[chosen.task];
  if (handler) return handler(file, form(file));
  $("original").src = URL.createObjectURL(file);
  setStatus(`Classifying ${file.name || "image"}…`);
  const body = form(file);
  body.append("top_k", $("top-k").value);
  const r = await fetch("/v1/classify", { method: "POST", body });
  if (!r.ok) {
    $("answer").hidden = true;
    showWarnings([]);
    setStatus(await errorText(r), true);
    return;
  }
  const answer = await r.json();
  showResults(answer);
  showWarnings(answer.warnings);
  $("answer").hidden = false;
  setStatus(`Done: ${answer.result[0].keyword}.`);
  document.body.dataset.state = "classified";

  $("cam-status").textContent = "Computing feature maps and Grad-CAM…";
  const c = await fetch("/v1/cam", { method: "POST", body: form(file) });
  if (!c.ok) { $("cam-status").textContent = await errorText(c); return; }
  showCam(await c.json());
  document.body.dataset.state = "cam-shown";
}

function init() {
  $("file").addEventListener("change", (ev) => classify(ev.target.files[0]));
  $("model").addEventListener("change", showModelInfo);
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    classify(ev.dataTransfer.files[0]);
  });
  loadModels().catch((err) => setStatus(`Cannot reach the server: ${err}`, true));
}

document.addEventListener("DOMContentLoaded", init);
