// The page's detection card: POST /v1/detect, then boxes, labels, scores and instance masks over the
// image. Loaded by one line of index.html; app.js hands an image here when the chosen model detects.
"use strict";

function cocoRleDecode(rle) {  // COCO's compressed RLE string -> column-major run lengths -> Uint8Array h*w
  const s = rle.counts, counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1, c = 0;
    while (more) {
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  const [h, w] = rle.size, out = new Uint8Array(h * w);
  let at = 0, v = 0;
  for (const n of counts) { if (v) out.fill(1, at, at + n); at += n; v ^= 1; }
  return out;  // index x * h + y
}

window.cnnlabTasks.detect = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = $("detect-answer");
  const res = await window.cnnlabAsk("/v1/detect", body, card, `Detecting in ${file.name || "image"}…`);
  if (!res) return;
  const photo = new Image();
  photo.src = URL.createObjectURL(file);
  await photo.decode();
  const [h, w] = res.size, scale = Math.max(1, Math.floor(384 / Math.max(h, w)));
  const canvas = $("detect-overlay");
  canvas.width = w * scale; canvas.height = h * scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(photo, 0, 0, w * scale, h * scale);
  const colour = (k) => (typeof vocColour === "function" ? vocColour(k + 1) : [255, 80, 0]);
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  for (const obj of res.objects) {
    if (!obj.mask) continue;
    const m = cocoRleDecode(obj.mask), c = colour(res.classes.indexOf(obj.keyword));
    for (let y = 0; y < canvas.height; y++) for (let x = 0; x < canvas.width; x++) {
      if (!m[Math.floor(x / scale) * h + Math.floor(y / scale)]) continue;
      const i = 4 * (y * canvas.width + x);
      for (let j = 0; j < 3; j++) img.data[i + j] = (img.data[i + j] + c[j]) / 2;
    }
  }
  ctx.putImageData(img, 0, 0);
  const list = $("detect-list");
  list.replaceChildren();
  ctx.font = "12px sans-serif";
  for (const obj of res.objects) {
    const c = `rgb(${colour(res.classes.indexOf(obj.keyword)).join(",")})`, L = obj.location;
    ctx.strokeStyle = c; ctx.lineWidth = 2;
    ctx.strokeRect(L.left * scale, L.top * scale, L.width * scale, L.height * scale);
    ctx.fillStyle = c;
    ctx.fillText(`${obj.keyword} ${obj.score.toFixed(2)}`, L.left * scale + 2, Math.max(10, L.top * scale - 3));
    const li = document.createElement("li");
    li.textContent = `${obj.keyword} ${(100 * obj.score).toFixed(1)}% at (${L.left}, ${L.top}) ${L.width}×${L.height}`;
    list.appendChild(li);
  }
  $("answer").hidden = true;
  card.hidden = false;
  $("status").textContent = `Done: ${res.objects.length} objects.`;
  document.body.dataset.state = "detected";
};
