// The page's clip card: POST /v1/classify-clip with an animated GIF, then the clip (the browser plays
// the GIF), the class and every class's probability as a bar, the most likely first.
// Loaded by one line of index.html; app.js hands a file here when the chosen model classifies clips.
"use strict";

window.cnnlabTasks.video = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = window.cnnlabCard("video-answer", '<div class="card"><h2>Clip class</h2>' +
    '<p class="top1"><strong id="video-label"></strong> <span class="muted" id="video-score"></span></p>' +
    '<figure><img id="video-clip" class="pixels" alt="the clip sent" width="192">' +
    "<figcaption>the clip as sent; the model sees its frames spread evenly over it</figcaption></figure>" +
    '<ol id="video-classes" class="legend"></ol></div>');
  const res = await window.cnnlabAsk("/v1/classify-clip", body, card, `Classifying the clip ${file.name || ""}…`);
  if (!res) return;
  $("video-clip").src = URL.createObjectURL(file);
  $("video-label").textContent = res.label;
  $("video-score").textContent = `${(100 * res.score).toFixed(1)}%`;
  const list = $("video-classes");
  list.replaceChildren();
  const ranked = Object.entries(res.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of ranked) {
    const li = document.createElement("li");
    li.dataset.label = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "inline-block";
    bar.style.height = "0.8em";
    bar.style.marginRight = "0.5em";
    bar.style.background = name === res.label ? "#e67800" : "#4670c8";
    bar.style.width = `${Math.max(1, Math.round(160 * p))}px`;
    li.append(bar, `${name} ${(100 * p).toFixed(1)}%`);
    list.appendChild(li);
  }
  $("answer").hidden = true;
  card.hidden = false;
  $("status").textContent = `Done: ${res.label}.`;
  document.body.dataset.state = "classified-clip";
};
