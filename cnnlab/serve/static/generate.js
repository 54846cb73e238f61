// The page's generation cards. A GAN (task "generate") draws samples: POST /v1/generate with the number,
// the seed, a class for a class-conditional GAN, or a latent walk; the grid comes back as a PNG. An
// image-to-image model (task "translate", pix2pix) turns the dropped mask or edge map into an image:
// POST /v1/translate. Loaded by one line of index.html; app.js hands a dropped image here when the
// chosen model is one of these.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let served = [];  // /v1/models, for the chosen model's task and classes

  function chosen() {
    return served.find((m) => m.name === $("model").value);
  }

  function sampleCard() {
    return window.cnnlabCard("generate-answer", '<div class="card"><h2>Samples <span class="muted">(GAN)</span></h2>' +
      '<p class="controls"><label>Images <input id="gen-n" type="number" min="1" max="64" value="16"></label> ' +
      '<label>Seed <input id="gen-seed" type="number" min="0" value="0"></label> ' +
      '<label id="gen-class-label">Class <select id="gen-class"></select></label> ' +
      '<label><input id="gen-walk" type="checkbox"> latent walk</label> ' +
      '<button id="gen-draw" type="button">Draw</button></p>' +
      '<figure><img id="gen-grid" class="pixels" alt="generated images">' +
      '<figcaption id="gen-caption"></figcaption></figure></div>');
  }

  function offerSamples() {
    const m = chosen();
    const card = $("generate-answer");
    if (!m || m.task !== "generate") { if (card) card.hidden = true; return; }
    const made = sampleCard();
    const select = $("gen-class");
    select.replaceChildren(new Option(m.conditional ? "every class in turn" : "(unconditional)", ""));
    if (m.conditional) for (const name of m.classes) select.appendChild(new Option(name, name));
    $("gen-class-label").hidden = !m.conditional;
    $("gen-draw").onclick = draw;
    made.hidden = false;
  }

  async function draw() {
    const card = sampleCard();
    const request = { model: $("model").value, n: Number($("gen-n").value), seed: Number($("gen-seed").value) };
    if ($("gen-class").value) request.class = $("gen-class").value;
    if ($("gen-walk").checked) request.interpolate = "true";
    $("status").textContent = "Drawing samples…";
    const r = await fetch("/v1/generate", { method: "POST", body: JSON.stringify(request),
                                            headers: { "Content-Type": "application/json" } });
    if (!r.ok) {
      let text = `${r.status} ${r.statusText}`;
      try { text = (await r.json()).error_msg || text; } catch (e) { /* keep the status line */ }
      $("status").textContent = text;
      return;
    }
    const res = await r.json();
    $("gen-grid").src = `data:image/png;base64,${res.grid_png}`;
    const what = res.classes ? `classes ${[...new Set(res.classes)].join(", ")}` : (request.interpolate ? "latent walks" : "samples");
    $("gen-caption").textContent = `${res.n} images of ${res.image_size.join("×")} · seed ${res.seed} · ${what} · ${res.time_ms} ms`;
    $("gen-caption").dataset.n = res.n;
    $("answer").hidden = true;
    card.hidden = false;
    $("status").textContent = `Done: ${res.n} images drawn.`;
    document.body.dataset.state = "generated";
  }

  // A dropped image means "show me what this model does": a GAN draws its samples.
  window.cnnlabTasks.generate = async function () {
    offerSamples();
    await draw();
  };

  window.cnnlabTasks.translate = async function (file, body) {
    const card = window.cnnlabCard("translate-answer", '<div class="card"><h2>Translated <span class="muted">(pix2pix)</span></h2>' +
      '<div class="pair"><figure><img id="tr-input" class="pixels" alt="condition"><figcaption>condition</figcaption></figure>' +
      '<figure><img id="tr-output" class="pixels" alt="generated image"><figcaption id="tr-caption">generated</figcaption></figure></div></div>');
    const res = await window.cnnlabAsk("/v1/translate", body, card, `Translating ${file.name || "image"}…`);
    if (!res) return;
    $("tr-input").src = URL.createObjectURL(file);
    $("tr-output").src = `data:image/png;base64,${res.image_png}`;
    $("tr-caption").textContent = `generated ${res.size.slice(1).join("×")}`;
    $("answer").hidden = true;
    card.hidden = false;
    $("status").textContent = "Done: image generated.";
    document.body.dataset.state = "translated";
  };

  document.addEventListener("DOMContentLoaded", async () => {
    $("model").addEventListener("change", offerSamples);
    const r = await fetch("/v1/models");
    if (r.ok) served = (await r.json()).models;
    offerSamples();
  });
})();
