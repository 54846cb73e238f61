// The page's segmentation card: POST /v1/segment, then the class mask over the image with a legend.
// Loaded by one line of index.html; app.js hands an image here when the chosen model segments.
"use strict";

function vocColour(k) {  // PASCAL VOC's palette, as the service's mask PNG uses it
  let r = 0, g = 0, b = 0, c = k;
  for (let j = 0; j < 8; j++) {
    r |= ((c >> 0) & 1) << (7 - j);
    g |= ((c >> 1) & 1) << (7 - j);
    b |= ((c >> 2) & 1) << (7 - j);
    c >>= 3;
  }
  return [r, g, b];
}

window.cnnlabTasks.segment = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = $("segment-answer");
  const res = await window.cnnlabAsk("/v1/segment", body, card, `Segmenting ${file.name || "image"}…`);
  if (!res) return;
  const mask = new Image();
  mask.src = "data:image/png;base64," + res.mask_png;
  const photo = new Image();
  photo.src = URL.createObjectURL(file);
  await Promise.all([mask.decode(), photo.decode()]);
  const [h, w] = res.size;
  const canvas = $("segment-overlay");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(photo, 0, 0, w, h);
  const base = ctx.getImageData(0, 0, w, h);
  ctx.drawImage(mask, 0, 0);
  const colours = ctx.getImageData(0, 0, w, h);
  for (let i = 0; i < base.data.length; i += 4) {
    const c = colours.data;
    if (c[i] || c[i + 1] || c[i + 2]) {  // not background: half image, half class colour
      for (let j = 0; j < 3; j++) base.data[i + j] = (base.data[i + j] + c[i + j]) / 2;
    }
  }
  ctx.putImageData(base, 0, 0);
  const legend = $("segment-legend");
  legend.replaceChildren();
  const areas = Object.entries(res.areas).sort((a, b) => b[1].pixels - a[1].pixels);
  for (const [name, area] of areas) {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${vocColour(res.classes.indexOf(name)).join(",")})`;
    li.append(swatch, ` ${name}: ${(100 * area.fraction).toFixed(1)}%`);
    legend.appendChild(li);
  }
  $("answer").hidden = true;
  card.hidden = false;
  $("status").textContent = "Done: the class of every pixel.";
  document.body.dataset.state = "segmented";
};
