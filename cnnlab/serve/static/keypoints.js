// The page's keypoint card: POST /v1/keypoints, then the skeleton drawn over the image.
// Loaded by one line of index.html; app.js hands an image here when the chosen model finds keypoints.
"use strict";

window.cnnlabTasks.keypoints = async function (file, body) {
  const $ = (id) => document.getElementById(id);
  const card = window.cnnlabCard("keypoints-answer", '<div class="card images"><figure><canvas id="keypoints-overlay"></canvas>' +
    "<figcaption>keypoints and skeleton (the figure's left orange, right blue)</figcaption></figure></div>");
  const res = await window.cnnlabAsk("/v1/keypoints", body, card, `Finding keypoints in ${file.name || "image"}…`);
  if (!res) return;
  const photo = new Image();
  photo.src = URL.createObjectURL(file);
  await photo.decode();
  const scale = 4;  // keypoints are in the model's input pixels; drawn 4 times larger
  const canvas = $("keypoints-overlay");
  canvas.width = res.width * scale; canvas.height = res.height * scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(photo, 0, 0, canvas.width, canvas.height);
  const pts = res.keypoints;
  const colour = (a, b) => (a.includes("left") && (!b || b.includes("left")) ? "rgb(255,140,0)"
    : a.includes("right") && (!b || b.includes("right")) ? "rgb(30,144,255)" : "rgb(50,205,50)");
  ctx.lineWidth = 3;
  for (const [a, b] of res.skeleton) {  // skeleton edges: 0-based keypoint indices
    const p = pts[a], q = pts[b];
    if (!p || !q || !p.visible || !q.visible) continue;
    ctx.strokeStyle = colour(p.name, q.name);
    ctx.beginPath(); ctx.moveTo(p.x * scale, p.y * scale); ctx.lineTo(q.x * scale, q.y * scale); ctx.stroke();
  }
  for (const p of pts) {
    if (!p.visible) continue;
    ctx.fillStyle = colour(p.name);
    ctx.beginPath(); ctx.arc(p.x * scale, p.y * scale, 4, 0, 2 * Math.PI); ctx.fill();
  }
  $("answer").hidden = true;
  card.hidden = false;
  $("status").textContent = `Done: ${pts.filter((p) => p.visible).length} keypoints (score ${res.score.toFixed(3)}).`;
  document.body.dataset.state = "keypoints";
};
