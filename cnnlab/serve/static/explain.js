// The explainer page: a convolution / pooling playground on the decks' worked examples, a kernel on a
// picture, and a walk through a served model (POST /v1/walk). No libraries, no build step.
// Arithmetic is plain double precision, in the order PyTorch's definition reads: for each output unit,
// the sum over channels, kernel rows and kernel columns of input * kernel (no flip), plus the bias.
"use strict";

// ---------------------------------------------------------------------------------------------
// Arithmetic (exposed as window.cnnExplain for the browser test)

function pair(v) { return Array.isArray(v) ? [v[0], v[1]] : [v, v]; }

function zeros3(c, h, w) {
  return Array.from({ length: c }, () => Array.from({ length: h }, () => new Array(w).fill(0)));
}

// One axis of the output size: floor((n + 2p - d(k - 1) - 1) / s) + 1, and whether the windows fit exactly.
function outputSize(n, k, s, p, d) {
  const span = d * (k - 1) + 1;          // positions a (dilated) window covers
  const room = n + 2 * p - span;         // how far the window can move
  if (room < 0) return { size: 0, fits: false, tooBig: true, room, span, left: 0 };
  return { size: Math.floor(room / s) + 1, fits: room % s === 0, tooBig: false, room, span, left: room % s };
}

// x: C x H x W, w: F x C x kh x kw, b: F (or null). Returns {out: F x oh x ow, padded: C x H' x W'}.
function conv2d(x, w, b, opts) {
  const [sh, sw] = pair(opts.stride || 1), [ph, pw] = pair(opts.padding || 0), [dh, dw] = pair(opts.dilation || 1);
  const C = x.length, H = x[0].length, W = x[0][0].length;
  const F = w.length, kh = w[0][0].length, kw = w[0][0][0].length;
  if (w[0].length !== C) throw new Error(`the input has ${C} channel(s) but each filter has ${w[0].length}`);
  const oh = outputSize(H, kh, sh, ph, dh), ow = outputSize(W, kw, sw, pw, dw);
  if (oh.tooBig || ow.tooBig) throw new Error("the (dilated) kernel is larger than the padded input");
  const padded = zeros3(C, H + 2 * ph, W + 2 * pw);
  for (let c = 0; c < C; c++) for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) padded[c][i + ph][j + pw] = x[c][i][j];
  const out = zeros3(F, oh.size, ow.size);
  for (let f = 0; f < F; f++) for (let i = 0; i < oh.size; i++) for (let j = 0; j < ow.size; j++) {
    let total = 0;
    for (let c = 0; c < C; c++) {
      let part = 0;
      for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) part += padded[c][i * sh + u * dh][j * sw + v * dw] * w[f][c][u][v];
      total += part;
    }
    out[f][i][j] = total + (b ? b[f] : 0);
  }
  return { out, padded, stride: [sh, sw], padding: [ph, pw], dilation: [dh, dw], size: [oh, ow], kernel: [kh, kw] };
}

// The terms of one output unit: per channel, the (input, kernel, row, col) pairs and their sum.
function convTerms(res, w, b, f, i, j) {
  const [sh, sw] = res.stride, [dh, dw] = res.dilation, [kh, kw] = res.kernel;
  return res.padded.map((ch, c) => {
    const terms = [];
    let sum = 0;
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) {
      const r = i * sh + u * dh, q = j * sw + v * dw;
      terms.push({ r, q, x: ch[r][q], w: w[f][c][u][v] });
      sum += ch[r][q] * w[f][c][u][v];
    }
    return { c, terms, sum };
  });
}

// Pooling per channel, as torch.nn.functional.max_pool2d / avg_pool2d (padding: -inf for max; zeros
// that are counted for average, torch's count_include_pad=True).
function pool2d(x, opts) {
  const [kh, kw] = pair(opts.size), [sh, sw] = pair(opts.stride || opts.size), [ph, pw] = pair(opts.padding || 0);
  const mode = opts.mode || "max";
  const C = x.length, H = x[0].length, W = x[0][0].length;
  if (2 * ph > kh || 2 * pw > kw) throw new Error("pooling padding may be at most half the window (as in PyTorch)");
  const oh = outputSize(H, kh, sh, ph, 1), ow = outputSize(W, kw, sw, pw, 1);
  if (oh.tooBig || ow.tooBig) throw new Error("the window is larger than the padded input");
  const fill = mode === "max" ? -Infinity : 0;
  const padded = Array.from({ length: C }, (_, c) => Array.from({ length: H + 2 * ph }, (_, i) =>
    Array.from({ length: W + 2 * pw }, (_, j) => {
      const r = i - ph, q = j - pw;
      return r >= 0 && r < H && q >= 0 && q < W ? x[c][r][q] : fill;
    })));
  const out = zeros3(C, oh.size, ow.size);
  for (let c = 0; c < C; c++) for (let i = 0; i < oh.size; i++) for (let j = 0; j < ow.size; j++) {
    let acc = mode === "max" ? -Infinity : 0;
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) {
      const val = padded[c][i * sh + u][j * sw + v];
      acc = mode === "max" ? Math.max(acc, val) : acc + val;
    }
    out[c][i][j] = mode === "max" ? acc : acc / (kh * kw);
  }
  return { out, padded, stride: [sh, sw], padding: [ph, pw], dilation: [1, 1], size: [oh, ow], kernel: [kh, kw], mode };
}

// "0 1 2\n3 4 5" (or ';' between rows) -> [[0,1,2],[3,4,5]]; a clear error otherwise.
function parseMatrix(text, name) {
  const rows = text.split(/[;\n]/).map(r => r.trim()).filter(r => r.length);
  if (!rows.length) throw new Error(`${name} is empty`);
  const m = rows.map(r => r.split(/[\s,]+/).map(v => {
    const n = Number(v);
    if (v === "" || !Number.isFinite(n)) throw new Error(`${name}: '${v}' is not a number`);
    return n;
  }));
  if (m.some(r => r.length !== m[0].length)) throw new Error(`${name} is not rectangular: every row needs ${m[0].length} numbers`);
  return m;
}

function parsePair(text, name, min) {
  const parts = String(text).split(",").map(s => s.trim());
  const vals = parts.map(Number);
  if (!(parts.length === 1 || parts.length === 2) || vals.some(v => !Number.isInteger(v) || v < min))
    throw new Error(`${name} takes 'N' or 'rows,cols' with whole numbers of at least ${min}, got '${text}'`);
  return vals.length === 1 ? [vals[0], vals[0]] : vals;
}

// Shown numbers: integers as they are; others to 4 decimals, marked "≈" when that rounds them.
function fmt(v) {
  if (v === -Infinity) return "−∞";
  if (Number.isInteger(v)) return String(v);
  const r = Number(v.toFixed(4));
  return r === v ? String(r) : "≈" + r;
}

function numberCell(el, v) {
  el.textContent = fmt(v);
  el.dataset.value = String(v);
  if (!Number.isInteger(v) && Number(v.toFixed(4)) !== v) el.title = String(v);
}

// ---------------------------------------------------------------------------------------------
// The decks' worked examples

const RAMP = [[0, 1, 2], [3, 4, 5], [6, 7, 8]];
const K01 = [[0, 1], [2, 3]];
const RANGE = (n, from = 0) => Array.from({ length: n }, (_, i) => i + from);
const SEVEN = RANGE(7).map(i => RANGE(7).map(j => (i * 7 + j) % 5));
const CROSS = [[1, 0, 1], [0, 1, 0], [1, 0, 1]];
const pad1 = m => m.slice(1, -1).map(r => r.slice(1, -1));
// cs231n's 7x7x3 demo (the deck's "Input Volume (+pad 1) (7x7x3)"), without its zero border: padding 1 adds it.
const VOLUME = [
  pad1([[0,0,0,0,0,0,0],[0,1,0,1,0,1,0],[0,1,2,2,2,2,0],[0,2,1,0,2,1,0],[0,0,1,2,1,2,0],[0,1,1,0,1,2,0],[0,0,0,0,0,0,0]]),
  pad1([[0,0,0,0,0,0,0],[0,0,0,2,2,1,0],[0,2,2,0,1,0,0],[0,0,2,0,1,1,0],[0,0,2,1,0,0,0],[0,2,0,2,2,0,0],[0,0,0,0,0,0,0]]),
  pad1([[0,0,0,0,0,0,0],[0,1,2,2,2,1,0],[0,0,1,1,0,1,0],[0,1,1,0,0,0,0],[0,1,2,0,0,0,0],[0,2,1,0,0,0,0],[0,0,0,0,0,0,0]]),
];
const W0 = [[[1, 1, -1], [-1, 0, -1], [1, 0, 0]], [[-1, -1, -1], [-1, 0, -1], [1, 1, 1]], [[-1, -1, 1], [-1, 0, 1], [1, -1, 1]]];
const W1 = [[[0, 0, 1], [1, 1, -1], [0, -1, -1]], [[0, 1, 0], [-1, 0, -1], [1, 1, 1]], [[0, 1, 1], [-1, 0, 1], [0, -1, 1]]];

const EXAMPLES = {
  basic: { title: "3x3 input, 2x2 kernel: 19 25 37 43", op: "conv", x: [RAMP], w: [[K01]] },
  padding: { title: "the same with padding 1: 4x4", op: "conv", x: [RAMP], w: [[K01]], padding: "1" },
  stride: { title: "padding 1, strides (3, 2)", op: "conv", x: [RAMP], w: [[K01]], padding: "1", stride: "3,2" },
  channels: { title: "two input channels: 56 72 104 120", op: "conv", x: [RAMP, RAMP.map(r => r.map(v => v + 1))],
              w: [[K01, K01.map(r => r.map(v => v + 1))]] },
  "one-by-one": { title: "1x1 convolution over three channels: 2.6 3.8 5.0 …", op: "conv",
                  x: [[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[1, 4, 7], [2, 5, 8], [3, 6, 9]], [[9, 8, 7], [6, 5, 4], [3, 2, 1]]],
                  w: [[[[0.5]], [[0.3]], [[0.2]]]] },
  volume: { title: "the 7x7x3 volume (5x5x3 + padding 1), two 3x3x3 filters, stride 2", op: "conv", x: VOLUME,
            w: [W0, W1], b: [1, 0], padding: "1", stride: "2" },
  ones: { title: "5x5 input, 3x3 kernel: first window 4", op: "conv",
          x: [[[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]], w: [[CROSS]] },
  "seven-s1": { title: "7x7 input, 3x3 filter, stride 1: 5x5", op: "conv", x: [SEVEN], w: [[CROSS]] },
  "seven-s2": { title: "7x7 input, 3x3 filter, stride 2: 3x3", op: "conv", x: [SEVEN], w: [[CROSS]], stride: "2" },
  "seven-s3": { title: "7x7 input, 3x3 filter, stride 3: does not fit", op: "conv", x: [SEVEN], w: [[CROSS]], stride: "3" },
  "seven-s3-p1": { title: "7x7, 3x3, stride 3 with padding 1: fits again", op: "conv", x: [SEVEN], w: [[CROSS]],
                   stride: "3", padding: "1" },
  dilated: { title: "7x7 input, 3x3 kernel, dilation 2: a 5x5 window", op: "conv", x: [SEVEN], w: [[CROSS]], dilation: "2" },
  edge: { title: "vertical edge on 10s and 0s: 0 30 30 0", op: "conv",
          x: [RANGE(6).map(() => [10, 10, 10, 0, 0, 0])], w: [[[[1, 0, -1], [1, 0, -1], [1, 0, -1]]]] },
  "edge-deck": { title: "vertical edge on the deck's 6x6 image: first window −5", op: "conv",
                 x: [[[3, 0, 1, 2, 7, 4], [1, 5, 8, 9, 3, 1], [2, 7, 2, 5, 1, 3], [0, 1, 3, 1, 7, 8], [4, 2, 1, 6, 2, 8], [2, 4, 5, 2, 3, 9]]],
                 w: [[[[1, 0, -1], [1, 0, -1], [1, 0, -1]]]] },
  "pool-ramp": { title: "2x2 max pooling, stride 1: 4 5 7 8", op: "max", x: [RAMP], size: "2", stride: "1" },
  "pool-max": { title: "2x2 max pooling, stride 2: 6 8 3 4", op: "max",
                x: [[[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]], size: "2", stride: "2" },
  "pool-avg": { title: "2x2 average pooling, stride 2: 3.25 5.25 2 2", op: "avg",
                x: [[[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]], size: "2", stride: "2" },
  "pool-overlap": { title: "3x3 max pooling, stride 2 (AlexNet's overlapping pooling)", op: "max",
                    x: [RANGE(5).map(i => RANGE(5).map(j => (i * 3 + j * 7) % 10))], size: "3", stride: "2" },
};

// ---------------------------------------------------------------------------------------------
// Playground state and drawing

const $ = id => document.getElementById(id);
const state = { op: "conv", x: [RAMP], w: [[K01]], b: [0], stride: "1", padding: "0", dilation: "1", size: "2",
                result: null, step: 0, timer: null };

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const matrixText = m => m.map(r => r.join(" ")).join("\n");

function buildMatrixEditors() {
  const box = $("matrices");
  box.replaceChildren();
  const isConv = state.op === "conv";
  const inputs = el("fieldset", { class: "mats" });
  inputs.appendChild(el("legend", {}, "Input" + (state.x.length > 1 ? " (one matrix per channel)" : "")));
  state.x.forEach((m, c) => {
    const label = el("label", { class: "mat" }, `input x[${c}]`);
    const t = el("textarea", { rows: String(Math.min(m.length, 8)), cols: "16", id: `in-${c}`, spellcheck: "false" });
    t.value = matrixText(m);
    t.addEventListener("input", () => readEditors());
    label.appendChild(t);
    inputs.appendChild(label);
  });
  box.appendChild(inputs);
  if (!isConv) return;
  state.w.forEach((filter, f) => {
    const fs = el("fieldset", { class: "mats" });
    fs.appendChild(el("legend", {}, `Filter ${f}: one kernel per input channel, and a bias`));
    filter.forEach((k, c) => {
      const label = el("label", { class: "mat" }, `kernel w[${f}][${c}] (slides over x[${c}])`);
      const t = el("textarea", { rows: String(Math.max(1, k.length)), cols: "12", id: `k-${f}-${c}`, spellcheck: "false" });
      t.value = matrixText(k);
      t.addEventListener("input", () => readEditors());
      label.appendChild(t);
      fs.appendChild(label);
    });
    const bl = el("label", { class: "mat" }, `bias b[${f}]`);
    const bi = el("input", { id: `b-${f}`, size: "5", value: String(state.b[f] || 0) });
    bi.addEventListener("input", () => readEditors());
    bl.appendChild(bi);
    fs.appendChild(bl);
    box.appendChild(fs);
  });
}

function readEditors() {
  try {
    state.x = state.x.map((_, c) => parseMatrix($(`in-${c}`).value, `input x[${c}]`));
    if (state.op === "conv") {
      state.w = state.w.map((filter, f) => filter.map((_, c) => parseMatrix($(`k-${f}-${c}`).value, `kernel w[${f}][${c}]`)));
      state.b = state.w.map((_, f) => {
        const v = Number($(`b-${f}`).value);
        if (!Number.isFinite(v)) throw new Error(`bias b[${f}] is not a number`);
        return v;
      });
    }
    const shapes = new Set(state.x.map(m => `${m.length}x${m[0].length}`));
    if (shapes.size > 1) throw new Error("every input channel needs the same height and width");
    if (state.op === "conv") {
      const ks = new Set(state.w.flat().map(m => `${m.length}x${m[0].length}`));
      if (ks.size > 1) throw new Error("every kernel needs the same height and width");
    }
  } catch (e) { return showError(e.message); }
  compute();
}

function readControls() {
  state.op = $("op").value;
  state.stride = $("stride").value;
  state.padding = $("padding").value;
  state.dilation = $("dilation").value;
  state.size = $("pool-size").value;
}

function resizeChannels(c, f) {
  const [H, W] = [state.x[0].length, state.x[0][0].length];
  const [kh, kw] = [state.w[0][0].length, state.w[0][0][0].length];
  const blank = (h, w) => Array.from({ length: h }, () => new Array(w).fill(0));
  while (state.x.length < c) state.x.push(blank(H, W));
  state.x.length = c;
  while (state.w.length < f) state.w.push([]);
  state.w.length = f;
  state.w = state.w.map(filter => { const k = filter.slice(0, c); while (k.length < c) k.push(blank(kh, kw)); return k; });
  while (state.b.length < f) state.b.push(0);
  state.b.length = f;
}

function showError(msg) {
  const box = $("pg-error");
  box.textContent = msg;
  box.hidden = !msg;
  if (msg) { $("output-grids").replaceChildren(); $("step").replaceChildren(); state.result = null; }
  document.body.dataset.playground = msg ? "error" : "ok";
}

function compute() {
  readControls();
  $("pool-size-label").hidden = state.op === "conv";
  $("dilation").disabled = state.op !== "conv";
  $("filters").disabled = state.op !== "conv";
  try {
    const stride = parsePair(state.stride, "stride", 1), padding = parsePair(state.padding, "padding", 0);
    if (state.op === "conv") {
      const dilation = parsePair(state.dilation, "dilation", 1);
      state.result = conv2d(state.x, state.w, state.b, { stride, padding, dilation });
    } else {
      state.result = pool2d(state.x, { size: parsePair(state.size, "window", 1), stride, padding, mode: state.op });
    }
  } catch (e) {
    drawFormula();
    return showError(e.message);
  }
  showError("");
  state.step = Math.min(state.step, unitCount() - 1);
  drawFormula();
  drawGrids();
}

function unitCount() {
  const r = state.result;
  return r ? r.out.length * r.size[0].size * r.size[1].size : 0;
}

function unitAt(step) {
  const r = state.result, oh = r.size[0].size, ow = r.size[1].size;
  return { f: Math.floor(step / (oh * ow)), i: Math.floor((step % (oh * ow)) / ow), j: step % ow };
}

function drawFormula() {
  const box = $("size-formula");
  box.replaceChildren();
  let stride, padding, dilation, kernel;
  try {
    stride = parsePair(state.stride, "stride", 1); padding = parsePair(state.padding, "padding", 0);
    dilation = state.op === "conv" ? parsePair(state.dilation, "dilation", 1) : [1, 1];
    kernel = state.op === "conv" ? [state.w[0][0].length, state.w[0][0][0].length] : parsePair(state.size, "window", 1);
  } catch (e) { return; }
  const n = [state.x[0].length, state.x[0][0].length];
  box.appendChild(el("p", {}, "Output size per axis: floor((N + 2P − D·(F − 1) − 1) / S) + 1; with D = 1 this is the decks' (N − F + 2P) / S + 1."));
  let allFit = true;
  ["height", "width"].forEach((axis, a) => {
    const o = outputSize(n[a], kernel[a], stride[a], padding[a], dilation[a]);
    const exact = (n[a] - kernel[a] + 2 * padding[a]) / stride[a] + 1;
    const line = el("p", { class: "axis", "data-axis": axis });
    const deck = dilation[a] === 1 ? `; the decks' form: (${n[a]} − ${kernel[a]} + 2·${padding[a]}) / ${stride[a]} + 1 = ${fmt(exact)}` : "";
    line.textContent = o.tooBig
      ? `${axis}: the window spans ${o.span} but the padded input has only ${n[a] + 2 * padding[a]}`
      : `${axis}: floor((${n[a]} + 2·${padding[a]} − ${dilation[a]}·(${kernel[a]} − 1) − 1) / ${stride[a]}) + 1 = ` +
        `floor(${o.room} / ${stride[a]}) + 1 = ${o.size}${deck}`;
    box.appendChild(line);
    if (!o.tooBig && !o.fits) {
      allFit = false;
      const warn = el("p", { class: "nofit", role: "note" });
      warn.textContent = `Does not fit (大小不匹配) along the ${axis}: ${o.room} / ${stride[a]} is not a whole number, so ` +
        `after the last window ${o.left} ${axis === "height" ? "row(s) at the bottom" : "column(s) on the right"} of the ` +
        `padded input are never covered. PyTorch floors the division and silently leaves them out; ` +
        `padding or another stride makes it fit.`;
      box.appendChild(warn);
    }
  });
  box.dataset.fits = String(allFit);
}

function drawGrids() {
  const r = state.result;
  const unit = unitAt(state.step);
  const window = new Set();
  if (r) {
    const [sh, sw] = r.stride, [dh, dw] = r.dilation, [kh, kw] = r.kernel;
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) window.add(`${unit.i * sh + u * dh},${unit.j * sw + v * dw}`);
  }
  const [ph, pw] = r.padding;
  $("padded-note").textContent = ph || pw ? `(zero padding shaded: ${ph} row(s), ${pw} column(s))` : "";
  const inBox = $("input-grids");
  inBox.replaceChildren();
  r.padded.forEach((m, c) => {
    const fig = el("figure", { class: "grid-fig" });
    fig.appendChild(el("figcaption", {}, r.padded.length > 1 ? `x[${c}]` : "x"));
    const table = el("table", { class: "grid", "data-grid": `input-${c}` });
    m.forEach((row, i) => {
      const tr = el("tr");
      row.forEach((v, j) => {
        const td = el("td");
        const isPad = i < ph || j < pw || i >= m.length - ph || j >= row.length - pw;
        if (isPad) td.classList.add("pad");
        if (window.has(`${i},${j}`) && (state.op !== "conv" ? c === unit.f : true)) td.classList.add("win");
        numberCell(td, v);
        if (v === -Infinity) td.textContent = "−∞";
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    fig.appendChild(table);
    inBox.appendChild(fig);
  });
  const outBox = $("output-grids");
  outBox.replaceChildren();
  r.out.forEach((m, f) => {
    const fig = el("figure", { class: "grid-fig" });
    fig.appendChild(el("figcaption", {}, state.op === "conv" ? `filter ${f}` : `channel ${f}`));
    const table = el("table", { class: "grid out", "data-grid": `output-${f}` });
    m.forEach((row, i) => {
      const tr = el("tr");
      row.forEach((v, j) => {
        const td = el("td");
        const b = el("button", { type: "button", "data-f": f, "data-i": i, "data-j": j,
                                 "aria-label": `output ${f}, row ${i}, column ${j}` });
        numberCell(b, v);
        if (f === unit.f && i === unit.i && j === unit.j) { td.classList.add("win"); b.setAttribute("aria-current", "true"); }
        b.addEventListener("click", () => {
          state.step = (f * m.length + i) * row.length + j;
          drawGrids();
          outBox.querySelector(`button[data-f="${f}"][data-i="${i}"][data-j="${j}"]`).focus();
        });
        td.appendChild(b);
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    fig.appendChild(table);
    outBox.appendChild(fig);
  });
  drawStep();
}

function drawStep() {
  const r = state.result, box = $("step");
  box.replaceChildren();
  const { f, i, j } = unitAt(state.step);
  $("step-where").textContent = `window ${state.step + 1} of ${unitCount()}`;
  const [sh, sw] = r.stride, [dh, dw] = r.dilation, [kh, kw] = r.kernel;
  const top = i * sh, left = j * sw;
  box.appendChild(el("p", { class: "where" }, `out[${f}][${i}][${j}]: window rows ${top}…${top + (kh - 1) * dh}, ` +
    `columns ${left}…${left + (kw - 1) * dw} of the ${r.padding[0] || r.padding[1] ? "padded " : ""}input`));
  const value = r.out[f][i][j];
  if (state.op === "conv") {
    const parts = convTerms(r, state.w, state.b, f, i, j);
    parts.forEach(p => {
      const line = el("p", { class: "terms", "data-channel": p.c });
      line.textContent = `${parts.length > 1 ? `channel ${p.c}, x[${p.c}] · w[${f}][${p.c}]: ` : ""}` +
        p.terms.map(t => `${fmt(t.x)}×${fmt(t.w)}`).join(" + ") + ` = ${fmt(p.sum)}`;
      box.appendChild(line);
    });
    const bias = state.b[f] || 0;
    const total = el("p", { class: "total" });
    total.textContent = (parts.length > 1 || bias ? parts.map(p => fmt(p.sum)).join(" + ") + (bias ? ` + bias ${fmt(bias)}` : "") + " = " : "sum = ") + fmt(value);
    total.dataset.value = String(value);
    box.appendChild(total);
  } else {
    const vals = [];
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) vals.push(r.padded[f][top + u][left + v]);
    const line = el("p", { class: "total" });
    line.textContent = state.op === "max" ? `max(${vals.map(fmt).join(", ")}) = ${fmt(value)}`
      : `(${vals.map(fmt).join(" + ")}) / ${vals.length} = ${fmt(value)}`;
    line.dataset.value = String(value);
    box.appendChild(line);
  }
}

function loadExample(name) {
  const e = EXAMPLES[name];
  const copy = a => JSON.parse(JSON.stringify(a));
  state.op = e.op;
  state.x = copy(e.x);
  state.w = e.w ? copy(e.w) : [[[[1]]]];
  state.b = e.b ? copy(e.b) : state.w.map(() => 0);
  state.step = 0;
  $("op").value = e.op;
  $("stride").value = e.stride || (e.op === "conv" ? "1" : e.size);
  $("padding").value = e.padding || "0";
  $("dilation").value = e.dilation || "1";
  $("pool-size").value = e.size || "2";
  $("channels").value = String(state.x.length);
  $("filters").value = String(state.w.length);
  $("example").value = name;
  $("example-note").textContent = e.title;
  buildMatrixEditors();
  compute();
}

function moveStep(delta) {
  const n = unitCount();
  if (!n) return;
  state.step = (state.step + delta + n) % n;
  drawGrids();
}

function setupPlayground() {
  const sel = $("example");
  for (const [name, e] of Object.entries(EXAMPLES)) sel.appendChild(el("option", { value: name }, e.title));
  sel.addEventListener("change", () => loadExample(sel.value));
  for (const id of ["stride", "padding", "dilation", "pool-size"]) $(id).addEventListener("input", () => { state.step = 0; compute(); });
  $("op").addEventListener("change", () => { state.step = 0; buildMatrixEditors(); compute(); });
  const counts = () => {
    const c = Math.max(1, Math.min(4, parseInt($("channels").value, 10) || 1));
    const f = Math.max(1, Math.min(4, parseInt($("filters").value, 10) || 1));
    // A change event also fires when focus leaves the field; rebuilding then would replace the editor
    // the user is moving into, so only a real change of the counts rebuilds.
    if (c === state.x.length && f === state.w.length) return;
    resizeChannels(c, f);
    state.step = 0;
    buildMatrixEditors();
    compute();
  };
  $("channels").addEventListener("change", counts);
  $("filters").addEventListener("change", counts);
  $("prev").addEventListener("click", () => moveStep(-1));
  $("next").addEventListener("click", () => moveStep(1));
  $("play").addEventListener("click", () => {
    const btn = $("play");
    if (state.timer) { clearInterval(state.timer); state.timer = null; btn.textContent = "play"; btn.setAttribute("aria-pressed", "false"); return; }
    state.timer = setInterval(() => moveStep(1), 900);
    btn.textContent = "pause"; btn.setAttribute("aria-pressed", "true");
  });
  loadExample("basic");
}

// ---------------------------------------------------------------------------------------------
// A kernel on a picture

const IMAGE_KERNELS = {
  emboss: { title: "emboss (浮雕)", k: [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]] },
  edge: { title: "edge, centre −7 (边缘)", k: [[1, 1, 1], [1, -7, 1], [1, 1, 1]] },
  edge8: { title: "edge, centre 8 (边缘)", k: [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]] },
  vertical: { title: "vertical edge", k: [[1, 0, -1], [1, 0, -1], [1, 0, -1]] },
  identity: { title: "identity", k: [[0, 0, 0], [0, 1, 0], [0, 0, 0]] },
};
const picture = { grey: null, out: null, kernel: null };

function greyFromCanvas(ctx, w, h) {
  const d = ctx.getImageData(0, 0, w, h).data;
  const g = Array.from({ length: h }, () => new Array(w));
  // Pillow's "L" conversion, in its fixed-point form: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16.
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const o = (i * w + j) * 4;
    g[i][j] = (d[o] * 19595 + d[o + 1] * 38470 + d[o + 2] * 7471 + 0x8000) >> 16;
  }
  return g;
}

function drawGrey(canvas, m, clip) {
  const h = m.length, w = m[0].length;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const v = clip ? Math.max(0, Math.min(255, Math.round(m[i][j]))) : m[i][j];
    const o = (i * w + j) * 4;
    img.data[o] = img.data[o + 1] = img.data[o + 2] = v; img.data[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function applyImageKernel() {
  if (!picture.grey) return;
  let k;
  try { k = parseMatrix($("image-kernel-text").value, "kernel"); } catch (e) { $("image-status").textContent = e.message; return; }
  if (k.length % 2 === 0 || k[0].length % 2 === 0) { $("image-status").textContent = "the kernel needs an odd size, to keep the picture's size"; return; }
  const res = conv2d([picture.grey], [[k]], null, { padding: [(k.length - 1) / 2, (k[0].length - 1) / 2] });
  picture.out = res.out[0];
  picture.kernel = k;
  drawGrey($("image-out"), picture.out, true);
  let lo = Infinity, hi = -Infinity, clipped = 0;
  for (const row of picture.out) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); if (v < 0 || v > 255) clipped++; }
  $("image-out-caption").textContent = `output: values ${fmt(lo)} … ${fmt(hi)}; ${clipped} pixel(s) outside 0…255 drawn clipped`;
  document.body.dataset.image = "done";
}

function setupImage() {
  const sel = $("image-kernel");
  for (const [name, e] of Object.entries(IMAGE_KERNELS)) sel.appendChild(el("option", { value: name }, e.title));
  const pick = () => { $("image-kernel-text").value = matrixText(IMAGE_KERNELS[sel.value].k); applyImageKernel(); };
  sel.addEventListener("change", pick);
  $("image-kernel-text").addEventListener("input", applyImageKernel);
  pick();
  $("image-file").addEventListener("change", async () => {
    const file = $("image-file").files[0];
    if (!file) return;
    let bitmap;
    try { bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" }); }
    catch (e) { $("image-status").textContent = `cannot read ${file.name} as a picture`; return; }
    const scale = Math.min(1, 160 / Math.max(bitmap.width, bitmap.height));
    const w = Math.max(1, Math.round(bitmap.width * scale)), h = Math.max(1, Math.round(bitmap.height * scale));
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0, w, h);
    picture.grey = greyFromCanvas(ctx, w, h);
    drawGrey($("image-in"), picture.grey, false);
    $("image-status").textContent = `${file.name}: ${bitmap.width}x${bitmap.height}` +
      (scale < 1 ? `, shown at ${w}x${h} (scaled by the browser)` : ", at its own size");
    applyImageKernel();
  });
}

// ---------------------------------------------------------------------------------------------
// A walk through a served model

// A perceptually ordered colour scale (dark blue -> green -> yellow), from the layer's minimum to its maximum.
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(t) {
  t = Math.max(0, Math.min(1, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(t)), f = t - i;
  return STOPS[i].map((a, k) => Math.round(a + (STOPS[i + 1][k] - a) * f));
}

const walkState = { data: null, layer: null, channel: 0, unit: [0, 0] };

function layerRange(layer) {
  let lo = Infinity, hi = -Infinity;
  for (const v of layer.values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

function drawMap(canvas, values, offset, h, w, lo, hi) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    const [r, g, b] = colour(hi > lo ? (values[offset + p] - lo) / (hi - lo) : 0);
    img.data.set([r, g, b, 255], p * 4);
  }
  ctx.putImageData(img, 0, 0);
}

function drawLegend(canvas, lo, hi) {
  canvas.width = 120; canvas.height = 10;
  const ctx = canvas.getContext("2d");
  for (let x = 0; x < 120; x++) { const [r, g, b] = colour(x / 119); ctx.fillStyle = `rgb(${r},${g},${b})`; ctx.fillRect(x, 0, 1, 10); }
}

function drawWalkInput(field) {
  const d = walkState.data, [C, H, W] = d.input_shape;
  const canvas = $("walk-input"), s = Math.max(1, Math.floor(224 / Math.max(H, W)));
  canvas.width = W * s; canvas.height = H * s;
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
    const o = (i * W + j) * C;
    const [r, g, b] = C === 1 ? [d.input_pixels[o], d.input_pixels[o], d.input_pixels[o]] : d.input_pixels.slice(o, o + 3);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(j * s, i * s, s, s);
  }
  if (field) {
    const [r0, r1, c0, c1] = field;
    const y0 = Math.max(0, r0), y1 = Math.min(H - 1, r1), x0 = Math.max(0, c0), x1 = Math.min(W - 1, c1);
    ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 2;
    ctx.strokeRect(x0 * s + 1, y0 * s + 1, (x1 - x0 + 1) * s - 2, (y1 - y0 + 1) * s - 2);
  }
}

function selectUnit(li, c, i, j) {
  const d = walkState.data, layer = d.layers[li];
  walkState.layer = li; walkState.channel = c; walkState.unit = [i, j];
  const box = $("unit");
  box.replaceChildren();
  const spatial = layer.shape.length === 3;
  const [h, w] = spatial ? layer.shape.slice(1) : [1, 1];
  const index = spatial ? (c * h + i) * w + j : c;
  const v = layer.values[index];
  const p = el("p", { class: "unit-value" });
  p.append(`${layer.name} (${layer.type}), ${spatial ? `channel ${c}, row ${i}, column ${j}` : `unit ${c}`}: `);
  const s = el("strong", { id: "unit-value" });
  numberCell(s, v);
  p.appendChild(s);
  box.appendChild(p);
  let field = null;
  if (layer.field) {
    const [fr, fc] = layer.field;
    const [ii, jj] = spatial ? [i, j] : [0, 0];
    field = [fr.start + ii * fr.jump, fr.start + ii * fr.jump + fr.size - 1, fc.start + jj * fc.jump, fc.start + jj * fc.jump + fc.size - 1];
    const f = el("p", { id: "unit-field" });
    f.textContent = `receptive field: input rows ${field[0]}…${field[1]}, columns ${field[2]}…${field[3]} ` +
      `(size ${fr.size}x${fc.size}, jump ${fr.jump}, start ${fr.start}; parts outside the image are zero padding)`;
    f.dataset.field = field.join(",");
    box.appendChild(f);
  }
  drawWalkInput(field);
  drawWeights(layer, c, box);
  document.querySelectorAll("#layers .chan").forEach(b => b.setAttribute("aria-pressed", String(Number(b.dataset.layer) === li && Number(b.dataset.channel) === c)));
  const big = document.querySelector(`#layers canvas.big[data-layer="${li}"]`);
  if (big && spatial) drawBig(big, li, c);
}

function drawWeights(layer, c, box) {
  if (!layer.weight) {
    if (layer.weight_shape) box.appendChild(el("p", { class: "muted" }, `weights ${layer.weight_shape.join("x")}: too many to send`));
    return;
  }
  const shape = layer.weight_shape;
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  const ws = layer.weight.slice(c * per, (c + 1) * per);
  const head = el("p", {}, `weights that produced ${shape.length === 4 ? "channel" : "unit"} ${c}: ` +
    `${shape.slice(1).join("x")}` + (layer.bias ? `, bias ` : ""));
  if (layer.bias) { const b = el("span", { class: "bias" }); numberCell(b, layer.bias[c]); head.appendChild(b); }
  box.appendChild(head);
  const wrap = el("div", { class: "weights", "data-channel": c });
  if (shape.length === 4) {
    const [, cin, kh, kw] = shape;
    let lo = Math.min(...ws), hi = Math.max(...ws);
    for (let ci = 0; ci < cin; ci++) {
      const fig = el("figure", { class: "grid-fig" });
      fig.appendChild(el("figcaption", {}, `w[${c}][${ci}] on input channel ${ci}`));
      const t = el("table", { class: "grid small" });
      for (let u = 0; u < kh; u++) {
        const tr = el("tr");
        for (let v = 0; v < kw; v++) {
          const val = ws[(ci * kh + u) * kw + v], td = el("td");
          numberCell(td, val);
          const [r, g, b] = colour(hi > lo ? (val - lo) / (hi - lo) : 0.5);
          td.style.background = `rgb(${r},${g},${b})`;
          td.style.color = (r * 0.299 + g * 0.587 + b * 0.114) > 140 ? "#000" : "#fff";
          tr.appendChild(td);
        }
        t.appendChild(tr);
      }
      fig.appendChild(t);
      wrap.appendChild(fig);
    }
  } else {
    wrap.appendChild(el("p", { class: "muted" }, `${ws.length} weights, one per input; largest ${fmt(Math.max(...ws))}, smallest ${fmt(Math.min(...ws))}`));
  }
  box.appendChild(wrap);
}

function drawBig(canvas, li, c) {
  const layer = walkState.data.layers[li], [, h, w] = layer.shape, [lo, hi] = layer.range;
  const s = Math.max(2, Math.floor(224 / Math.max(h, w)));
  const small = document.createElement("canvas");
  drawMap(small, layer.values, c * h * w, h, w, lo, hi);
  canvas.width = w * s; canvas.height = h * s;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, w * s, h * s);
  if (walkState.layer === li && walkState.channel === c) {
    const [i, j] = walkState.unit;
    ctx.strokeStyle = "#ff3b30"; ctx.lineWidth = 2; ctx.strokeRect(j * s + 1, i * s + 1, s - 2, s - 2);
  }
  canvas.dataset.channel = c;
  canvas.dataset.scale = s;
}

function renderWalk(d) {
  walkState.data = d;
  const box = $("layers");
  box.replaceChildren();
  d.layers.forEach((layer, li) => {
    const sec = el("section", { class: "layer", "data-name": layer.name });
    const title = el("h4", {}, `${layer.name} · ${layer.type} → ${layer.shape.join("×")}`);
    sec.appendChild(title);
    if (!layer.values) { sec.appendChild(el("p", { class: "muted" }, layer.omitted)); box.appendChild(sec); return; }
    layer.range = layerRange(layer);
    const [lo, hi] = layer.range;
    const legend = el("p", { class: "legend" });
    const lc = el("canvas", { class: "legend-bar", "aria-hidden": "true" });
    drawLegend(lc, lo, hi);
    const loS = el("span", { class: "lo" }); numberCell(loS, lo);
    const hiS = el("span", { class: "hi" }); numberCell(hiS, hi);
    legend.append("colour scale, shared by every channel of this layer: ", loS, " ", lc, " ", hiS);
    sec.appendChild(legend);
    const chans = el("div", { class: "channels" });
    if (layer.shape.length === 3) {
      const [C, h, w] = layer.shape;
      for (let c = 0; c < C; c++) {
        const b = el("button", { type: "button", class: "chan", "data-layer": li, "data-channel": c,
                                 "aria-label": `${layer.name} channel ${c}`, "aria-pressed": "false" });
        const cv = el("canvas", { class: "pixels" });
        drawMap(cv, layer.values, c * h * w, h, w, lo, hi);
        b.append(cv, el("span", {}, String(c)));
        b.addEventListener("click", () => { selectUnit(li, c, 0, 0); });
        chans.appendChild(b);
      }
      sec.appendChild(chans);
      const big = el("canvas", { class: "big pixels", "data-layer": li, tabindex: "0",
                                 "aria-label": `${layer.name}: the chosen channel; arrow keys move the unit` });
      big.addEventListener("click", ev => {
        const s = Number(big.dataset.scale), rect = big.getBoundingClientRect();
        const j = Math.floor((ev.clientX - rect.left) * big.width / rect.width / s);
        const i = Math.floor((ev.clientY - rect.top) * big.height / rect.height / s);
        selectUnit(li, Number(big.dataset.channel), Math.min(h - 1, i), Math.min(w - 1, j));
      });
      big.addEventListener("keydown", ev => {
        const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
        if (!moves[ev.key]) return;
        ev.preventDefault();
        const [i, j] = walkState.layer === li ? walkState.unit : [0, 0];
        selectUnit(li, Number(big.dataset.channel), Math.max(0, Math.min(h - 1, i + moves[ev.key][0])),
                   Math.max(0, Math.min(w - 1, j + moves[ev.key][1])));
      });
      drawBig(big, li, 0);
      sec.appendChild(big);
    } else {
      const strip = el("div", { class: "strip" });
      layer.values.forEach((v, u) => {
        const b = el("button", { type: "button", class: "chan unit1", "data-layer": li, "data-channel": u,
                                 "aria-label": `${layer.name} unit ${u}`, "aria-pressed": "false" });
        const [r, g, bl] = colour(hi > lo ? (v - lo) / (hi - lo) : 0);
        b.style.background = `rgb(${r},${g},${bl})`;
        b.title = `unit ${u}: ${v}`;
        b.addEventListener("click", () => selectUnit(li, u, 0, 0));
        strip.appendChild(b);
      });
      sec.appendChild(strip);
    }
    box.appendChild(sec);
  });
  const body = $("softmax").querySelector("tbody");
  body.replaceChildren();
  d.softmax.forEach((p, k) => {
    const tr = el("tr", { "data-class": k });
    const name = el("th", { scope: "row" }, d.classes[k]);
    const logit = el("td", { class: "num" }); numberCell(logit, d.logits[k]);
    const prob = el("td", { class: "num prob" }); numberCell(prob, p);
    const bar = el("td"); const span = el("span", { class: "pbar" }); span.style.width = `${(p * 100).toFixed(2)}%`; bar.appendChild(span);
    tr.append(name, logit, prob, bar);
    body.appendChild(tr);
  });
  $("answer-json").textContent = JSON.stringify(d.answer, null, 2);
  $("walk-result").hidden = false;
  const first = d.layers.findIndex(l => l.values && l.shape.length === 3);
  if (first >= 0) selectUnit(first, 0, 0, 0); else drawWalkInput(null);
  document.body.dataset.walk = "done";
}

async function setupWalk() {
  let models = [];
  try { models = (await (await fetch("/v1/models")).json()).models || []; } catch (e) { models = []; }
  const classify = models.filter(m => m.task === "classify");
  if (!classify.length) {
    $("walk-status").textContent = "No classifier is served here. Start the page with a model: " +
      "cnnlab explain --web --checkpoint RUN (or cnnlab serve RUN, then open /explain).";
    return;
  }
  const sel = $("walk-model");
  for (const m of classify) sel.appendChild(el("option", { value: m.name }, `${m.name} (${m.architecture}, input ${m.input_size.join("x")})`));
  $("walk-controls").hidden = false;
  $("walk-status").textContent = "Choose an image: every layer's activations, then the softmax.";
  $("walk-file").addEventListener("change", async () => {
    const file = $("walk-file").files[0];
    if (!file) return;
    const f = new FormData();
    f.append("image", file, file.name || "image");
    f.append("model", sel.value);
    if ($("walk-invert").checked) f.append("invert", "true");
    $("walk-status").textContent = "Running the model…";
    const r = await fetch("/v1/walk", { method: "POST", body: f });
    const d = await r.json();
    if (!r.ok) { $("walk-status").textContent = `${d.error_code}: ${d.error_msg} (HTTP ${r.status})`; document.body.dataset.walk = "error"; return; }
    $("walk-status").textContent = `${d.model}: ${d.layers.length} layers in ${d.time_ms} ms`;
    renderWalk(d);
  });
}

window.cnnExplain = { conv2d, pool2d, outputSize, parseMatrix, fmt, EXAMPLES, state, loadExample, picture, walkState, selectUnit };

document.addEventListener("DOMContentLoaded", () => {
  setupPlayground();
  setupImage();
  setupWalk().finally(() => { document.body.dataset.ready = "true"; });
});
