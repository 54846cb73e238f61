// The page's text-line card: POST /v1/ocr, then the string read (greedy and beam search) with each
// character's confidence marked under the image at the feature column where CTC placed it.
// Loaded by one line of index.html; app.js hands an image here when the chosen model reads text.
"use strict";

window.cnnlabTasks.ocr = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = window.cnnlabCard("ocr-answer", '<div class="card"><h2>Text read <span class="muted">(CTC, greedy)</span></h2>' +
    '<p class="top1"><strong id="ocr-text"></strong></p><p class="muted" id="ocr-beam"></p>' +
    '<figure><canvas id="ocr-line" class="pixels"></canvas>' +
    "<figcaption>each character under the column it was read at, darker = more confident</figcaption></figure>" +
    '<ol id="ocr-characters" class="legend"></ol></div>');
  const res = await window.cnnlabAsk("/v1/ocr", body, card, `Reading ${file.name || "image"}…`);
  if (!res) return;
  const photo = new Image();
  photo.src = URL.createObjectURL(file);
  await photo.decode();
  const scale = Math.max(1, Math.floor(640 / photo.width));  // small line images drawn larger, pixels kept sharp
  const strip = 22;  // the band under the image where the characters are written
  const canvas = $("ocr-line");
  canvas.width = photo.width * scale; canvas.height = photo.height * scale + strip;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(photo, 0, 0, photo.width * scale, photo.height * scale);
  ctx.font = "16px monospace";
  ctx.textAlign = "center";
  const columnWidth = canvas.width / res.columns;
  const list = $("ocr-characters");
  list.replaceChildren();
  for (const c of res.characters) {
    const x = (c.column + 0.5) * columnWidth;
    ctx.fillStyle = `rgba(0,0,0,${0.25 + 0.75 * c.confidence})`;
    ctx.fillText(c.char, x, canvas.height - 5);
    const li = document.createElement("li");
    li.dataset.char = c.char;
    li.textContent = `${c.char} ${(100 * c.confidence).toFixed(1)}%`;
    list.appendChild(li);
  }
  $("ocr-text").textContent = res.text || "(nothing read)";
  $("ocr-beam").textContent = `confidence ${(100 * res.confidence).toFixed(1)}%; beam search reads ` +
    `"${res.beam_text}" (${(100 * res.beam_confidence).toFixed(1)}%)`;
  $("answer").hidden = true;
  card.hidden = false;
  $("status").textContent = `Done: ${res.characters.length} characters.`;
  document.body.dataset.state = "read";
};
