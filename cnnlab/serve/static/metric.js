// The page's search tab for metric-learning models: POST /v1/search (the nearest indexed images of the
// chosen image) and POST /v1/verify (the chosen image against a second one: same class or not).
// Loaded by one line of index.html; app.js hands an image here when the chosen model embeds.
"use strict";

window.cnnlabTasks.metric = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = $("metric-answer");
  const reason = async (r) => {
    try { const e = await r.json(); return `${e.error_msg} (${e.error_code}, HTTP ${r.status})`; }
    catch (e) { return `HTTP ${r.status}`; }
  };
  $("answer").hidden = true;
  card.hidden = false;
  window.cnnlabMetricFirst = file;
  $("metric-query").src = URL.createObjectURL(file);
  $("status").textContent = `Searching the index for ${file.name || "image"}…`;
  body.append("top_k", $("top-k").value);
  const r = await fetch("/v1/search", { method: "POST", body });
  const list = $("metric-neighbours");
  list.replaceChildren();
  if (!r.ok) {
    $("metric-search-status").textContent = await reason(r);
    $("status").textContent = "No search: see the search card.";
    return;
  }
  const answer = await r.json();
  for (const n of answer.result) {
    const li = document.createElement("li");
    const name = n.name.split("/").pop();
    li.textContent = `${name} · distance ${n.distance.toFixed(4)}`;
    li.title = n.name;
    list.appendChild(li);
  }
  $("metric-search-status").textContent =
    `${answer.result.length} nearest of ${answer.index_size} indexed images (${answer.time_ms} ms)`;
  $("status").textContent = "Done: the nearest indexed images.";
  document.body.dataset.state = "searched";
};

async function cnnlabVerify(second) {
  const $ = (id) => document.getElementById(id);
  const first = window.cnnlabMetricFirst;
  if (!first || !second) { $("metric-verify-status").textContent = "Choose the first image above, then a second one."; return; }
  const body = new FormData();
  body.append("images", first, first.name || "first");
  body.append("images", second, second.name || "second");
  body.append("model", $("model").value);
  if ($("invert").checked) body.append("invert", "true");
  const r = await fetch("/v1/verify", { method: "POST", body });
  if (!r.ok) {
    let text = `HTTP ${r.status}`;
    try { const e = await r.json(); text = `${e.error_msg} (${e.error_code}, HTTP ${r.status})`; } catch (e) { /* keep */ }
    $("metric-verify-status").textContent = text;
    return;
  }
  const v = await r.json();
  $("metric-verify-status").textContent =
    `${v.same ? "Same" : "Different"}: distance ${v.distance.toFixed(4)} ${v.same ? "≤" : ">"} threshold ${v.threshold.toFixed(4)}`;
  document.body.dataset.state = "verified";
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("metric-second");
  if (input) input.addEventListener("change", (ev) => cnnlabVerify(ev.target.files[0]));
  const select = document.getElementById("model");  // another model: its own card shows, not this one
  if (select) select.addEventListener("change", () => { document.getElementById("metric-answer").hidden = true; });
});
