// The charrnn page: calls the JSON API (/api/...) and draws the results. No build step, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
let info = null;
let generation = null; // the AbortController of the generation under way

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ run: $("run").value || undefined, ...body }),
  };
  const response = await fetch(path, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// How a token looks on the page: line breaks and spaces made visible.
function display(token) {
  if (token === "<eos>" || token === "\n") return "⏎";
  return token;
}

function probabilityColour(p) { // red (surprising) .. yellow .. green (expected)
  return `hsl(${Math.round(120 * p)}, 75%, 78%)`;
}

function valueColour(v) { // v in [-1, 1]: red for negative, blue for positive
  const a = Math.min(Math.abs(v), 1);
  return v >= 0 ? `rgba(30, 100, 220, ${a})` : `rgba(220, 50, 30, ${a})`;
}

// A new run: the results shown belong to the previous one.
function clearResults() {
  showError("");
  if (generation) generation.abort();
  for (const id of ["sample-output", "translation"]) $(id).textContent = "";
  for (const id of ["score-output", "heatmap", "attention", "classify-labels", "classify-prefixes"]) {
    $(id).replaceChildren();
  }
  $("tooltip").hidden = true;
}

async function loadInfo() {
  const name = $("run").value;
  info = await api("/api/info" + (name ? "?run=" + encodeURIComponent(name) : ""));
  const select = $("run");
  if (!select.options.length) {
    for (const r of info.runs) select.add(new Option(`${r.name} (${r.title})`, r.name));
  }
  const loss = info.best_val_loss == null ? "no validation yet" : `best val loss ${info.best_val_loss.toFixed(4)}`;
  const labels = info.label_counts ? ` · ${info.label_counts.length} labels` : "";
  $("info").textContent = `${info.level} level · ${info.layers}×${info.hidden} ${info.cell} · ` +
    `${info.parameters.toLocaleString()} parameters · ${info.steps ?? 0} steps · ${loss}${labels}`;
  // a conditional run generates text of a chosen label, or of one drawn from the training prior
  $("label").replaceChildren(new Option("any (drawn from the training prior)", ""),
    ...(info.label_counts || []).map((l) => new Option(`${l.label} (${l.count.toLocaleString()})`, l.label)));
  // each panel lists the kinds of run it works with: <section data-kinds="lm">
  for (const el of document.querySelectorAll("[data-kinds]")) el.hidden = !el.dataset.kinds.split(" ").includes(info.kind);
  $("length").max = info.limits.max_length;
  const states = info.cell === "lstm" ? ["cell", "hidden"] : ["hidden"];
  $("state").replaceChildren(...states.map((s) => new Option(s === "cell" ? "cell c" : "hidden h", s)));
  $("layer").replaceChildren(...Array.from({ length: info.layers }, (_, i) => new Option(String(i + 1), String(i))));
}

// --- Generate: server-sent events read from a streamed POST response ---------------------------
async function generate() {
  if (info.kind === "conditional") return generateLabelled();
  showError("");
  const out = $("sample-output");
  out.textContent = "";
  out.dataset.done = "0";
  const seed = $("seed").value;
  const topP = Number($("top-p").value);
  generation = new AbortController();
  $("generate-button").disabled = true;
  $("stop-button").disabled = false;
  try {
    const response = await fetch("/api/sample", {
      method: "POST", headers: { "Content-Type": "application/json" }, signal: generation.signal,
      body: JSON.stringify({
        run: $("run").value, prime: $("prime").value, stream: true,
        temperature: Number($("temperature").value), length: Number($("length").value),
        top_p: topP >= 1 ? null : topP, seed: seed === "" ? null : Number(seed),
      }),
    });
    if (!response.ok) throw new Error((await response.json()).error);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const name = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (name === "error") throw new Error(data.error);
        if (data.text !== undefined) out.textContent += data.text;
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message);
  } finally {
    out.dataset.done = "1";
    $("generate-button").disabled = false;
    $("stop-button").disabled = true;
    generation = null;
  }
}

// A conditional run: texts of the chosen label (or each of a label drawn from the prior), each with its label.
async function generateLabelled() {
  showError("");
  const out = $("sample-output");
  out.replaceChildren();
  out.dataset.done = "0";
  const seed = $("seed").value;
  const topP = Number($("top-p").value);
  $("generate-button").disabled = true;
  try {
    const data = await api("/api/sample", {
      prime: $("prime").value, label: $("label").value || null, num: Number($("num").value) || 1,
      temperature: Number($("temperature").value), length: Number($("length").value),
      top_p: topP >= 1 ? null : topP, seed: seed === "" ? null : Number(seed),
    });
    out.replaceChildren(...data.samples.map((s) => {
      const row = document.createElement("div");
      const tag = document.createElement("span");
      row.className = "labelled-sample";
      row.dataset.label = s.label;
      row.dataset.text = s.text;
      tag.className = "sample-label";
      tag.textContent = s.label;
      row.append(tag, document.createTextNode(s.text));
      return row;
    }));
  } catch (err) { showError(err.message); } finally {
    out.dataset.done = "1";
    $("generate-button").disabled = false;
  }
}

// --- Score: tokens coloured by probability, top guesses on hover -------------------------------
function showTooltip(span, event) {
  const tip = $("tooltip");
  const alternatives = JSON.parse(span.dataset.alternatives);
  const head = document.createElement("div");
  head.textContent = `P(${display(span.dataset.token)} | before) = ${Number(span.dataset.prob).toFixed(4)}`;
  const list = alternatives.map((a) => {
    const row = document.createElement("div");
    row.className = "alt";
    row.dataset.token = a.token;
    row.dataset.prob = Math.exp(a.logprob);
    row.textContent = `${JSON.stringify(display(a.token))}  ${Math.exp(a.logprob).toFixed(4)}`;
    return row;
  });
  const title = document.createElement("div");
  title.className = "muted";
  title.textContent = "the model's top guesses here:";
  tip.replaceChildren(head, title, ...list);
  tip.style.left = `${event.pageX + 12}px`;
  tip.style.top = `${event.pageY + 12}px`;
  tip.hidden = false;
}

async function score() {
  showError("");
  try {
    const data = await api("/api/score", { text: $("score-text").value, top_k: 5 });
    const rows = data.sentences.map((s) => {
      const div = document.createElement("div");
      div.className = "sentence";
      s.tokens.forEach((token, i) => {
        const span = document.createElement("span");
        const p = Math.exp(s.token_logprobs[i]);
        span.className = "tok";
        span.textContent = display(token) + (info.level === "word" ? " " : "");
        span.style.background = probabilityColour(p);
        span.dataset.token = token;
        span.dataset.prob = p;
        span.dataset.logprob = s.token_logprobs[i];
        span.dataset.alternatives = JSON.stringify(s.alternatives[i]);
        span.addEventListener("mouseenter", (e) => showTooltip(span, e));
        span.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
        div.append(span);
      });
      const summary = document.createElement("span");
      summary.className = "summary";
      summary.textContent = `log P = ${s.logprob.toFixed(3)} · perplexity ${s.perplexity.toFixed(2)}` +
        (s.n_unk ? ` · ${s.n_unk} unknown` : "");
      div.append(summary);
      return div;
    });
    $("score-output").replaceChildren(...rows);
  } catch (err) { showError(err.message); }
}

// --- Look inside: a heat map of units over the tokens --------------------------------------------
function parseUnits(text) {
  const units = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const range = part.match(/^(\d+)\s*-\s*(\d+)$/);
    if (range) for (let u = Number(range[1]); u <= Number(range[2]); u++) units.push(u);
    else units.push(Number(part));
  }
  return units;
}

function heatRow(label, tokens, values, scale, attrs) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label;
  tr.append(th);
  tokens.forEach((token, i) => {
    const td = document.createElement("td");
    td.textContent = display(token);
    td.dataset.value = values[i];
    td.title = `${JSON.stringify(token)}: ${values[i].toFixed(4)}`;
    td.style.background = valueColour(values[i] / scale);
    tr.append(td);
  });
  Object.assign(tr.dataset, attrs);
  return tr;
}

async function inside(pattern) {
  showError("");
  try {
    const body = { text: $("inside-text").value };
    if (pattern) Object.assign(body, { pattern, top: 8 });
    else Object.assign(body, { state: $("state").value, layer: Number($("layer").value), units: parseUnits($("units").value) });
    const data = await api("/api/activations", body);
    const rows = [];
    if (data.signal) {
      const top = Math.max(...data.signal, 1);
      rows.push(heatRow(`pattern: ${data.pattern}`, data.tokens, data.signal, top, { pattern: data.pattern }));
    }
    for (const r of data.rows) {
      const scale = Math.max(1e-6, ...r.values.map(Math.abs)); // each row's colours span its own range
      const corr = r.correlation == null ? "" : ` r=${r.correlation.toFixed(2)}`;
      const label = `layer ${r.layer + 1} ${r.state === "cell" ? "c" : "h"} #${r.unit}${corr}`;
      rows.push(heatRow(label, data.tokens, r.values, scale, { state: r.state, layer: r.layer, unit: r.unit }));
    }
    $("heatmap").className = "heat";
    $("heatmap").replaceChildren(...rows);
  } catch (err) { showError(err.message); }
}

// --- Classify: the top labels, and P(label | the text so far) after each token -------------------
function labelBars(labels) {
  return labels.map((l) => {
    const row = document.createElement("div");
    const name = document.createElement("span");
    const bar = document.createElement("span");
    const value = document.createElement("span");
    row.className = "label-row";
    row.dataset.label = l.label;
    row.dataset.probability = l.probability;
    name.className = "name";
    name.textContent = l.label;
    bar.className = "bar";
    bar.style.width = `${Math.max(1, Math.round(200 * l.probability))}px`;
    value.textContent = l.probability.toFixed(4);
    row.append(name, bar, value);
    return row;
  });
}

async function classify() {
  showError("");
  try {
    const data = await api("/api/classify", { text: $("classify-text").value, top_k: 5 });
    $("classify-labels").replaceChildren(...labelBars(data.labels));
    const head = document.createElement("tr");
    head.append(document.createElement("th"));
    data.tokens.forEach((token, i) => {
      const th = document.createElement("th");
      const change = data.change[i];
      th.textContent = display(token);
      th.dataset.index = i;
      th.dataset.change = change;
      if (data.highlighted.includes(i)) th.className = change >= 0 ? "moved" : "moved down";
      th.title = `P(${data.label}) ${change >= 0 ? "+" : "−"}${Math.abs(change).toFixed(4)} at this token`;
      head.append(th);
    });
    const rows = data.labels.map((l, j) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = l.label;
      tr.dataset.label = l.label;
      tr.append(th);
      for (const row of data.prefix_probabilities) {
        const td = document.createElement("td");
        td.dataset.prob = row[j];
        td.title = `P(${l.label} | text so far) = ${row[j].toFixed(4)}`;
        td.textContent = " ";
        td.style.background = valueColour(row[j]);
        td.style.minWidth = "1.6em";
        tr.append(td);
      }
      return tr;
    });
    const table = $("classify-prefixes");
    table.className = "heat";
    table.replaceChildren(head, ...rows);
  } catch (err) { showError(err.message); }
}

// --- Translate: the translation and its attention matrix -----------------------------------------
async function translate() {
  showError("");
  try {
    const data = await api("/api/translate", { text: $("source").value, beam: Number($("beam").value) });
    $("translation").textContent = data.text;
    const table = $("attention");
    table.className = "heat";
    if (!data.attention) { table.replaceChildren(); return; }
    const head = document.createElement("tr");
    head.append(document.createElement("th"));
    for (const s of data.source_tokens) {
      const th = document.createElement("th");
      th.textContent = display(s);
      head.append(th);
    }
    const rows = data.attention.map((weights, i) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = display(data.tokens[i] ?? "");
      tr.append(th);
      for (const w of weights) {
        const td = document.createElement("td");
        td.dataset.weight = w;
        td.title = w.toFixed(3);
        td.textContent = " ";
        td.style.background = valueColour(w);
        td.style.minWidth = "1.6em";
        tr.append(td);
      }
      return tr;
    });
    table.replaceChildren(head, ...rows);
  } catch (err) { showError(err.message); }
}

// --- Memory: which earlier tokens moved one prediction; the run's gradient against distance -------
let memoryText = "";

function influenceColour(v, top) { // a log scale: the largest is darkest, four decades below it clear
  if (v == null || !(top > 0)) return "transparent";
  const a = Math.max(0, 1 + Math.log10(Math.max(v, 1e-30) / top) / 4);
  return `rgba(110, 50, 200, ${a.toFixed(3)})`;
}

function svgElement(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawCurve(curve) {
  const svg = $("memory-curve");
  $("memory-note").textContent = curve.note ? `No curve: ${curve.note}` :
    `mean over ${curve.positions} positions; memory horizon ${curve.memory_horizons.map((h) => h ?? `> ${curve.horizon}`).join(", ")}`;
  if (curve.note) { svg.replaceChildren(); return; }
  const [w, h, pad] = [Number(svg.getAttribute("width")), Number(svg.getAttribute("height")), 30];
  const logs = curve.hidden.flat().filter((v) => v > 0).map(Math.log10);
  const [low, high] = [Math.min(...logs), Math.max(...logs)];
  const x = (k) => pad + (k / curve.horizon) * (w - pad - 8);
  const y = (v) => 8 + (high - Math.log10(v)) / Math.max(high - low, 1e-9) * (h - pad - 8);
  const parts = [
    svgElement("line", { x1: pad, y1: h - pad, x2: w - 8, y2: h - pad, stroke: "#999" }),
    svgElement("line", { x1: pad, y1: 8, x2: pad, y2: h - pad, stroke: "#999" }),
  ];
  const label = (text, attrs) => { const t = svgElement("text", attrs); t.textContent = text; return t; };
  parts.push(label(`k = ${curve.horizon}`, { x: w - 50, y: h - pad + 14 }), label("k = 0", { x: pad, y: h - pad + 14 }));
  parts.push(label(`1e${Math.round(high)}`, { x: 0, y: 14 }), label(`1e${Math.round(low)}`, { x: 0, y: h - pad }));
  curve.hidden.forEach((values, layer) => {
    const colour = `hsl(${(layer * 110 + 260) % 360}, 60%, 45%)`;
    const points = values.map((v, k) => (v > 0 ? `${x(k).toFixed(1)},${y(v).toFixed(1)}` : null)).filter(Boolean);
    parts.push(svgElement("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5,
      "data-layer": layer, "data-points": points.length }));
    const k = curve.memory_horizons[layer];
    if (k != null && values[k] > 0) parts.push(svgElement("circle", { cx: x(k), cy: y(values[k]), r: 3, fill: colour, "data-horizon": k }));
  });
  svg.replaceChildren(...parts);
}

async function memory(position) {
  showError("");
  try {
    if (position === undefined) memoryText = $("memory-text").value;
    let data = await api("/api/memory", { text: memoryText, position: position ?? 0 });
    if (position === undefined && data.tokens.length > 1) { // start at the last token
      data = await api("/api/memory", { text: memoryText, position: data.tokens.length - 1 });
    }
    const top = Math.max(0, ...data.influence.filter((v) => v != null));
    const spans = data.tokens.map((token, i) => {
      const span = document.createElement("span");
      const v = data.influence[i];
      span.className = "tok" + (i === data.position ? " chosen" : "");
      span.textContent = display(token);
      span.dataset.index = i;
      if (v != null) span.dataset.influence = v;
      span.title = i === data.position ? `log P = ${data.logprob.toFixed(3)}` : (v == null ? "after the chosen token" : `${v.toExponential(2)}`);
      span.style.background = influenceColour(v, top);
      span.addEventListener("click", () => memory(i));
      return span;
    });
    const out = $("memory-output");
    out.replaceChildren(...spans);
    out.dataset.position = data.position;
    drawCurve(data.curve);
  } catch (err) { showError(err.message); }
}

function bindSlider(id, format) {
  const update = () => { $(`${id}-value`).textContent = format(Number($(id).value)); };
  $(id).addEventListener("input", update);
  update();
}

window.addEventListener("DOMContentLoaded", () => {
  bindSlider("temperature", (v) => v.toFixed(2));
  bindSlider("top-p", (v) => (v >= 1 ? "1 (off)" : v.toFixed(2)));
  bindSlider("length", (v) => String(v));
  $("run").addEventListener("change", () => { clearResults(); loadInfo().catch((e) => showError(e.message)); });
  $("generate-button").addEventListener("click", generate);
  $("stop-button").addEventListener("click", () => generation && generation.abort());
  $("score-button").addEventListener("click", score);
  $("inside-button").addEventListener("click", () => inside(null));
  $("find-button").addEventListener("click", () => inside($("pattern").value));
  $("translate-button").addEventListener("click", translate);
  $("classify-button").addEventListener("click", classify);
  $("memory-button").addEventListener("click", () => memory());
  loadInfo().then(() => { document.body.dataset.ready = "1"; }).catch((e) => showError(e.message));
});
