// The cost explorer. Every figure it shows is a field of a POST /evaluate answer: the page
// only picks the data, asks, and formats. Binary models: two requests per change, one at
// each model's card threshold, one at the chosen threshold with the value curve. A
// multiclass model: one request per change, under the K x K value matrix of the editor.
"use strict";

const REFERENCE = { tp: -35280, fp: -1287.67, tn: 0, fn: -252000 };
const OUTCOMES = ["tp", "fp", "tn", "fn"];
const KEY_STORAGE = "costaware.apiKey";
const COLORS = ["#0b5cad", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0f766e", "#a16207", "#be185d"];
const LOW = 1e-4; // the slider and the chart's x axis: log from LOW to 0.1, linear above

const $ = (id) => document.getElementById(id);
const state = {
  models: [],
  defaultModel: null,
  data: { kind: "held_out" },
  card: null,
  chosen: null,
  seq: 0,
  renders: 0,
  keyPrompt: null,
  // Multiclass: the model whose matrix the editor holds, its card's matrix, the answer.
  matrixFor: null,
  cardMatrix: null,
  linkedMatrix: null,
  multiclass: null,
};

// ------------------------------------------------------------------ formatting

const money2 = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const money0 = new Intl.NumberFormat("en-US", {
  style: "currency", currency: "USD", maximumFractionDigits: 0, minimumFractionDigits: 0,
});
const compact = new Intl.NumberFormat("en-US", {
  style: "currency", currency: "USD", notation: "compact", maximumSignificantDigits: 3,
});
const money = (x) => money2.format(x);
const shortT = (t) => (t === null || t === undefined ? "—" : String(Number(t.toPrecision(3))));
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const modelName = (entry) => (entry.model === null ? "posted scores" : entry.model);

// ------------------------------------------------------------------ threshold scale

function scaleFraction(t) {
  if (t <= LOW) return 0;
  if (t < 0.1) return (0.5 * (Math.log10(t) - Math.log10(LOW))) / (-1 - Math.log10(LOW));
  return 0.5 + (0.5 * (t - 0.1)) / 0.9;
}

function sliderToThreshold(position) {
  const f = position / 1000;
  const t = f < 0.5 ? 10 ** (Math.log10(LOW) + (f / 0.5) * (-1 - Math.log10(LOW))) : 0.1 + ((f - 0.5) / 0.5) * 0.9;
  return Number(Math.min(1, t).toPrecision(3));
}

const thresholdToSlider = (t) => Math.round(1000 * scaleFraction(t));

// ------------------------------------------------------------------ the service

function askForKey(reason) {
  if (state.keyPrompt) return state.keyPrompt;
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason;
  $("api-key").value = "";
  state.keyPrompt = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const key = $("api-key").value.trim();
        state.keyPrompt = null;
        if (dialog.returnValue === "ok" && key) {
          sessionStorage.setItem(KEY_STORAGE, key);
          resolve(true);
        } else {
          resolve(false);
        }
      },
      { once: true },
    );
    dialog.showModal();
  });
  return state.keyPrompt;
}

// fetch with the session's API key; a 401 asks for a key and tries again.
async function api(url, init = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = { Accept: "application/json", ...(init.headers || {}) };
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(url, { ...init, headers });
    if (response.status === 401) {
      const reason = key
        ? "The service refused that API key. Enter another; it is kept for this tab only."
        : "The service asks for an API key. It is kept for this browser tab only (session storage).";
      if (key) sessionStorage.removeItem(KEY_STORAGE);
      if (await askForKey(reason)) continue;
      throw new Error("401: the service needs an API key (none given)");
    }
    const text = await response.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText || "request failed";
      throw new Error(`${response.status}: ${detail}`);
    }
    return body;
  }
}

// ------------------------------------------------------------------ inputs and the query string

function number(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function readInputs() {
  const costs = {};
  for (const k of OUTCOMES) costs[k] = number(k);
  return { costs, threshold: number("threshold"), prevalence: number("prevalence"), model: $("model").value };
}

function writeQuery() {
  if (isMulticlass()) {
    const query = new URLSearchParams({ model: $("model").value });
    if (state.matrixFor === $("model").value) query.set("value_matrix", JSON.stringify(readMatrix()));
    history.replaceState(null, "", `${location.pathname}?${query}`);
    return;
  }
  const query = new URLSearchParams();
  for (const k of OUTCOMES) query.set(k, $(k).value.trim());
  query.set("model", $("model").value);
  query.set("threshold", $("threshold").value.trim());
  const prevalence = $("prevalence").value.trim();
  if (prevalence !== "") query.set("prevalence", prevalence);
  history.replaceState(null, "", `${location.pathname}?${query}`);
}

function syncPreset() {
  const same = OUTCOMES.every((k) => $(k).value.trim() !== "" && Number($(k).value) === REFERENCE[k]);
  $("preset").value = same ? "reference" : "custom";
}

function requests(inputs) {
  const data = state.data;
  if (data.kind === "csv") {
    const url = (extra) => {
      const query = new URLSearchParams();
      for (const k of OUTCOMES) if (inputs.costs[k] !== null) query.set(k, String(inputs.costs[k]));
      if (inputs.prevalence !== null) query.set("prevalence", String(inputs.prevalence));
      for (const [k, v] of Object.entries(extra)) query.set(k, String(v));
      return `evaluate?${query}`;
    };
    const init = { method: "POST", headers: { "Content-Type": "text/csv" }, body: data.text };
    const chosen = inputs.threshold === null ? { curve: true } : { threshold: inputs.threshold, curve: true };
    return [[url({}), init], [url(chosen), init]];
  }
  const base = { cost_matrix: inputs.costs };
  if (inputs.prevalence !== null) base.prevalence = inputs.prevalence;
  if (data.kind === "scores") Object.assign(base, { scores: data.scores, labels: data.labels });
  const chosen = { ...base, curve: true };
  if (inputs.threshold !== null) chosen.threshold = inputs.threshold;
  const post = (body) => ({
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return [["evaluate", post(base)], ["evaluate", post(chosen)]];
}

async function update() {
  if (isMulticlass()) return updateMulticlass();
  const seq = ++state.seq;
  writeQuery();
  syncPreset();
  document.body.dataset.state = "loading";
  try {
    const [card, chosen] = await Promise.all(requests(readInputs()).map(([url, init]) => api(url, init)));
    if (seq !== state.seq) return;
    state.card = card;
    state.chosen = chosen;
    render();
    showError(null);
    document.body.dataset.state = "ready";
  } catch (error) {
    if (seq !== state.seq) return;
    showError(error.message);
    document.body.dataset.state = "error";
  }
}

let timer = null;
function updateSoon() {
  clearTimeout(timer);
  timer = setTimeout(update, 120);
}

function showError(message, stale = true) {
  const box = $("error");
  box.hidden = message === null;
  box.textContent =
    message === null
      ? ""
      : `The service answered: ${message}` +
        (stale && (isMulticlass() ? state.multiclass : state.chosen)
          ? " (the figures below, dimmed, are for the last inputs it accepted)"
          : "");
}

// ------------------------------------------------------------------ data: held out or a dropped CSV

function parseScoresCsv(text) {
  const labels = [];
  const scores = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    const cells = line.split(",").map((c) => c.trim());
    if (cells.length !== 2) throw new Error(`row ${index + 1}: expected 2 columns (label,score), got ${cells.length}`);
    const values = cells.map(Number);
    if (labels.length === 0 && scores.length === 0 && cells.some((c) => c === "" || Number.isNaN(Number(c)))) {
      if (index === lines.findIndex((l) => l.trim() !== "")) return; // a header row
    }
    cells.forEach((c, column) => {
      if (c === "" || !Number.isFinite(values[column])) {
        throw new Error(`row ${index + 1}, column ${column + 1}: ${JSON.stringify(c)} is not a number`);
      }
    });
    labels.push(values[0]);
    scores.push(values[1]);
  });
  if (labels.length === 0) throw new Error("the CSV has no data rows");
  return { labels, scores };
}

async function useFile(file) {
  if (!file) return;
  try {
    const text = await file.text();
    const first = text.split(/\r?\n/).find((l) => l.trim() !== "");
    if (first === undefined) throw new Error(`${file.name}: the file is empty`);
    if (first.split(",").length === 2) {
      state.data = { kind: "scores", name: file.name, ...parseScoresCsv(text) };
    } else {
      state.data = { kind: "csv", name: file.name, text };
    }
  } catch (error) {
    showError(`${file.name}: ${error.message}`);
    return;
  }
  describeData();
  update();
}

function describeData() {
  const d = state.data;
  const text = {
    held_out: "Held-out split stored in each model's card.",
    csv: `${d.name}: labeled instances, scored here by each model.`,
    scores: `${d.name}: labels with scores produced elsewhere (no model involved).`,
  }[d.kind];
  $("data-source").textContent = text;
  $("model").disabled = d.kind === "scores";
}

// ------------------------------------------------------------------ rendering

function byModel(answer) {
  const map = new Map();
  for (const entry of answer.results) map.set(modelName(entry), entry);
  return map;
}

function selectedName() {
  if (state.data.kind === "scores") return "posted scores";
  return $("model").value;
}

function colorOf(name) {
  const names = state.chosen.results.map(modelName);
  return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length];
}

function valueCell(name, point, valueEntry, thresholdText) {
  const td = document.createElement("td");
  td.dataset.model = name;
  td.dataset.point = point;
  td.dataset.value = String(valueEntry.expected_value);
  td.dataset.per1000 = String(valueEntry.per_1000_decisions);
  td.innerHTML =
    `<span class="ev">${money(valueEntry.expected_value)}</span>` +
    `<small>${money0.format(valueEntry.per_1000_decisions)} /1,000</small>` +
    (thresholdText ? `<span class="t">${escapeHtml(thresholdText)}</span>` : "");
  return td;
}

function elkanText(elkan) {
  // A calibrated model's t* applies to its probability, not to the score the other
  // columns put a threshold on.
  const on = elkan.applied_to === "probability" ? " on probability" : "";
  if (elkan.kind === "threshold") return `t* = ${shortT(elkan.value)}${on}`;
  return elkan.kind.replace("_", " ") + on;
}

// Whether t* is a point on the score axis (of the chart and the threshold input): only
// when the model's scores are taken as probabilities (no calibration map).
const elkanOnScore = (elkan) => elkan.applied_to !== "probability";

// Never silent: a model without a calibration map has its raw score taken as a
// probability in every dollar figure, and says so beside its name.
function calibrationNote(entry) {
  if (entry.calibrated !== false) return "";
  return (
    ' <small class="uncalibrated" title="This model has no calibration map: its scores are ' +
    'not probabilities it has earned, and Elkan\'s t* is applied to the raw score.">uncalibrated</small>'
  );
}

function renderTable() {
  const card = byModel(state.card);
  const chosen = byModel(state.chosen);
  const cardRank = new Map(state.card.ranking.map((r) => [modelName(r), r.rank]));
  const tbody = document.querySelector("#models-table tbody");
  tbody.replaceChildren();
  for (const rank of state.chosen.ranking) {
    const name = modelName(rank);
    const atCard = card.get(name);
    const atChosen = chosen.get(name);
    const tr = document.createElement("tr");
    tr.dataset.model = name;
    if (name === selectedName()) tr.classList.add("selected");
    tr.innerHTML =
      `<td data-rank="chosen">${rank.rank}</td>` +
      `<td class="name"><span class="swatch" style="background:${colorOf(name)}"></span>${escapeHtml(name)}${calibrationNote(atChosen)}</td>` +
      `<td data-rank="card">${cardRank.get(name)}</td>`;
    const cardLabel = atCard.model === null ? "default t" : "card t";
    tr.append(
      valueCell(name, "card", atCard, `${cardLabel} = ${shortT(atCard.threshold)}`),
      valueCell(name, "elkan", atChosen.elkan_threshold, elkanText(atChosen.elkan_threshold)),
      valueCell(name, "chosen", atChosen, `t = ${shortT(atChosen.threshold)}`),
      valueCell(
        name,
        "best",
        atChosen.best_threshold,
        atChosen.best_threshold.threshold === null ? "treat none" : `t = ${shortT(atChosen.best_threshold.threshold)}`,
      ),
      valueCell(name, "treat_all", atChosen.treat_all, ""),
      valueCell(name, "treat_none", atChosen.treat_none, ""),
    );
    tbody.append(tr);
  }
  const first = state.chosen.results[0];
  let note = `Data: ${state.chosen.note}. n = ${first.n}, prevalence in the data ${shortT(first.prevalence)}`;
  if (first.target_prevalence !== null) note += `; values weighted to prevalence ${first.target_prevalence}`;
  $("data-note").textContent = `${note}. Best decision in sample: ${state.chosen.best_decision.model ?? "posted scores"}.`;
  const warnings = $("warnings");
  warnings.replaceChildren(
    ...state.chosen.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })),
  );
}

function renderConfusion() {
  const entry = byModel(state.chosen).get(selectedName());
  const weighted = entry.target_prevalence !== null ? ` weighted to prevalence ${entry.target_prevalence}` : "";
  document.querySelector("#confusion-table caption").textContent =
    `${modelName(entry)} at t = ${entry.threshold}, n = ${entry.n}: counts, and the dollars of each cell (sum of its outcome values${weighted}).`;
  for (const td of document.querySelectorAll("#confusion-table td[data-cell]")) {
    const cell = td.dataset.cell;
    td.dataset.count = String(entry.confusion[cell]);
    td.dataset.value = String(entry.confusion_value[cell]);
    td.innerHTML = `<strong>${cell.toUpperCase()} ${entry.confusion[cell]}</strong><small>${money(entry.confusion_value[cell])}</small>`;
  }
  $("band-text").textContent =
    `${modelName(entry)}: scores within ${entry.margin} of the threshold ${entry.threshold} ` +
    `(|score − t| < margin; ${entry.model === null ? "the default" : "the card's"} margin) are the close confusions: ` +
    `a small change of the threshold flips their decision.`;
  for (const td of document.querySelectorAll("#band-table td[data-close]")) {
    td.textContent = String(entry.close_confusions[td.dataset.close]);
  }
}

function niceStep(span) {
  const raw = span / 6;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
}

function renderChart() {
  const W = 900;
  const H = 380;
  const M = { l: 70, r: 18, t: 12, b: 44 };
  const plotW = W - M.l - M.r;
  const plotH = H - M.t - M.b;
  const card = byModel(state.card);
  const selected = selectedName();
  const entries = state.chosen.results;

  const marks = [];
  for (const entry of entries) {
    const name = modelName(entry);
    const atCard = card.get(name);
    marks.push({ name, shape: "square", what: "card threshold", t: atCard.threshold, v: atCard.expected_value });
    const elkan = entry.elkan_threshold;
    if (elkanOnScore(elkan) && (elkan.kind === "threshold" || elkan.kind === "always_positive")) {
      marks.push({ name, shape: "triangle", what: "Elkan's t*", t: elkan.value, v: elkan.expected_value });
    }
    marks.push({ name, shape: "circle", what: "chosen threshold", t: entry.threshold, v: entry.expected_value });
    if (entry.best_threshold.threshold !== null) {
      marks.push({ name, shape: "diamond", what: "in-sample best", t: entry.best_threshold.threshold, v: entry.best_threshold.expected_value });
    }
  }
  const treatAll = entries[0].treat_all.expected_value;
  const treatNone = entries[0].treat_none.expected_value;
  // The marked points, treat all and the in-sample best (treat none when that is best).
  const focus = [...marks.map((m) => m.v), treatAll, ...entries.map((e) => e.best_threshold.expected_value)];
  let lo = Math.min(...focus);
  let hi = Math.max(...focus);
  if (hi - lo < 1e-9 * Math.max(1, Math.abs(hi))) {
    lo -= Math.max(1, Math.abs(lo) * 0.05);
    hi += Math.max(1, Math.abs(hi) * 0.05);
  }
  const pad = (hi - lo) * 0.12;
  lo -= pad * 1.5;
  hi += pad;
  const x = (t) => M.l + plotW * scaleFraction(t);
  const y = (v) => M.t + plotH * (1 - (v - lo) / (hi - lo));
  const parts = [];
  parts.push(`<defs><clipPath id="plot-area"><rect x="${M.l}" y="${M.t}" width="${plotW}" height="${plotH}"/></clipPath></defs>`);

  const step = niceStep(hi - lo);
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${y(v)}" y2="${y(v)}" stroke="#eaeef2"/>`);
    parts.push(`<text x="${M.l - 6}" y="${y(v) + 4}" text-anchor="end" class="tick">${compact.format(v)}</text>`);
  }
  for (const t of [0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${M.t}" y2="${M.t + plotH}" stroke="#eaeef2"/>`);
    parts.push(`<text x="${x(t)}" y="${M.t + plotH + 16}" text-anchor="middle" class="tick">${t}</text>`);
  }
  parts.push(`<text x="${M.l + plotW / 2}" y="${H - 6}" text-anchor="middle" class="axis">threshold (treat when score ≥ t): log scale below 0.1</text>`);
  parts.push(`<text transform="translate(14 ${M.t + plotH / 2}) rotate(-90)" text-anchor="middle" class="axis">expected value per instance</text>`);

  const focusEntry = entries.find((e) => modelName(e) === selected) || entries[0];
  const bandLo = Math.max(0, focusEntry.threshold - focusEntry.margin);
  const bandHi = Math.min(1, focusEntry.threshold + focusEntry.margin);
  parts.push(
    `<rect x="${x(bandLo)}" y="${M.t}" width="${Math.max(1, x(bandHi) - x(bandLo))}" height="${plotH}" ` +
      `fill="rgba(11,92,173,0.10)" stroke="rgba(11,92,173,0.3)"><title>close-confusion band of ${escapeHtml(modelName(focusEntry))}</title></rect>`,
  );

  const line = (v, label, dash) => {
    if (v < lo || v > hi) return false;
    parts.push(`<line x1="${M.l}" x2="${W - M.r}" y1="${y(v)}" y2="${y(v)}" stroke="#57606a" stroke-dasharray="${dash}"/>`);
    parts.push(`<text x="${W - M.r - 4}" y="${y(v) - 4}" text-anchor="end" class="axis">${label} ${money(v)}</text>`);
    return true;
  };
  line(treatAll, "treat all", "6 4");
  const noneShown = line(treatNone, "treat none", "2 3");

  const ordered = [...entries].sort((a, b) => (modelName(a) === selected) - (modelName(b) === selected));
  parts.push(`<g clip-path="url(#plot-area)">`);
  for (const entry of ordered) {
    const name = modelName(entry);
    const points = entry.curve.thresholds.map((t, i) => `${x(t).toFixed(1)},${y(entry.curve.expected_value[i]).toFixed(1)}`);
    const width = name === selected ? 2.6 : 1.3;
    const opacity = name === selected ? 1 : 0.7;
    parts.push(`<polyline fill="none" stroke="${colorOf(name)}" stroke-width="${width}" stroke-opacity="${opacity}" stroke-linejoin="round" points="${points.join(" ")}"><title>${escapeHtml(name)}</title></polyline>`);
  }
  parts.push(`</g>`);
  for (const m of marks.sort((a, b) => (a.name === selected) - (b.name === selected))) {
    const cx = x(m.t);
    const cy = y(m.v);
    if (cy < M.t - 1 || cy > M.t + plotH + 1) continue;
    const r = m.name === selected ? 6 : 4.5;
    const fill = colorOf(m.name);
    const title = `<title>${escapeHtml(m.name)}, ${m.what} t = ${shortT(m.t)}: ${money(m.v)}</title>`;
    const common = `fill="${fill}" stroke="#fff" stroke-width="1.2" data-model="${escapeHtml(m.name)}" data-mark="${m.what}"`;
    if (m.shape === "circle") parts.push(`<circle cx="${cx}" cy="${cy}" r="${r}" ${common}>${title}</circle>`);
    if (m.shape === "square") parts.push(`<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" ${common}>${title}</rect>`);
    if (m.shape === "triangle") parts.push(`<polygon points="${cx},${cy - r * 1.2} ${cx - r * 1.1},${cy + r * 0.8} ${cx + r * 1.1},${cy + r * 0.8}" ${common}>${title}</polygon>`);
    if (m.shape === "diamond") parts.push(`<polygon points="${cx},${cy - r * 1.3} ${cx + r},${cy} ${cx},${cy + r * 1.3} ${cx - r},${cy}" ${common}>${title}</polygon>`);
  }
  parts.push(`<rect x="${M.l}" y="${M.t}" width="${plotW}" height="${plotH}" fill="none" stroke="#d0d7de"/>`);
  if (!noneShown) {
    const where = treatNone < lo ? "below" : "above";
    const at = treatNone < lo ? M.t + plotH - 6 : M.t + 14;
    parts.push(`<text x="${W - M.r - 4}" y="${at}" text-anchor="end" class="axis">treat none ${money(treatNone)} (${where} the chart)</text>`);
  }
  const label = `Expected value by threshold for ${entries.map(modelName).join(", ")}`;
  $("chart").innerHTML =
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(label)}" xmlns="http://www.w3.org/2000/svg">` +
    `<style>.tick{font-size:11px;fill:#57606a}.axis{font-size:12px;fill:#1b1f24}</style>${parts.join("")}</svg>`;
}

function render() {
  renderTable();
  renderConfusion();
  renderChart();
  const entry = byModel(state.chosen).get(selectedName());
  $("to-elkan").disabled =
    entry.elkan_threshold.value === null ||
    entry.elkan_threshold.kind !== "threshold" ||
    !elkanOnScore(entry.elkan_threshold);
  $("to-best").disabled = entry.best_threshold.threshold === null;
  rendered();
}

function rendered() {
  state.renders += 1;
  // The first full render, for bench/explorer.py (time from navigation start).
  if (state.renders === 1) performance.mark("explorer-first-render");
  document.body.dataset.renders = String(state.renders);
}

// ------------------------------------------------------------------ a multiclass model

function modelEntry(name) {
  return state.models.find((m) => m.name === name);
}

function isMulticlass() {
  const entry = modelEntry($("model").value);
  return entry !== undefined && entry.task === "multiclass";
}

function applyKind() {
  document.body.dataset.kind = isMulticlass() ? "multiclass" : "binary";
}

// A cell as typed: a number when it reads as one, else the text itself, so that the
// service refuses it and names the cell (cost_matrix.values[i][j]).
function cellValue(raw) {
  const text = raw.trim();
  const number = Number(text);
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) && Number.isFinite(number) ? number : raw;
}

function readMatrix() {
  const classes = state.cardMatrix.classes;
  const values = classes.map((_, i) => classes.map((_, j) => cellValue($(`vm-${i}-${j}`).value)));
  return { classes, values };
}

function buildEditor(classes, values) {
  const head = document.querySelector("#vm-table thead");
  const body = document.querySelector("#vm-table tbody");
  const corner = Object.assign(document.createElement("th"), { scope: "col", textContent: "truth \\ decided" });
  const headRow = document.createElement("tr");
  headRow.append(corner, ...classes.map((c) => Object.assign(document.createElement("th"), { scope: "col", textContent: c })));
  head.replaceChildren(headRow);
  body.replaceChildren(
    ...classes.map((truth, i) => {
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: truth }));
      classes.forEach((decided, j) => {
        const input = Object.assign(document.createElement("input"), {
          id: `vm-${i}-${j}`,
          type: "text",
          inputMode: "decimal",
          autocomplete: "off",
          value: String(values[i][j]),
        });
        input.setAttribute("aria-label", `Value of deciding ${decided} when the truth is ${truth}`);
        input.dataset.truth = truth;
        input.dataset.decided = decided;
        input.addEventListener("input", updateSoon);
        const td = document.createElement("td");
        td.append(input);
        tr.append(td);
      });
      return tr;
    }),
  );
}

// The editor holds the chosen model's matrix: from a shared link once, else its card's.
async function seedMatrix(name) {
  if (state.matrixFor === name) return;
  const card = await api(`models/${encodeURIComponent(name)}`);
  const matrix = { classes: card.value_matrix.classes, values: card.value_matrix.values };
  state.cardMatrix = matrix;
  const linked = state.linkedMatrix;
  state.linkedMatrix = null;
  const fits =
    linked &&
    JSON.stringify(linked.classes) === JSON.stringify(matrix.classes) &&
    Array.isArray(linked.values) &&
    linked.values.length === matrix.classes.length &&
    linked.values.every((row) => Array.isArray(row) && row.length === matrix.classes.length);
  buildEditor(matrix.classes, fits ? linked.values : matrix.values);
  state.matrixFor = name;
}

function multiclassRequest(name, matrix) {
  const data = state.data;
  if (data.kind === "scores") {
    throw new Error(
      `${data.name}: label,score rows are a binary model's scores; for ${name} drop labelled ` +
        "instances (label first, then its features) or use the held-out split",
    );
  }
  if (data.kind === "csv") {
    const query = new URLSearchParams({ value_matrix: JSON.stringify(matrix), models: name });
    return [`evaluate?${query}`, { method: "POST", headers: { "Content-Type": "text/csv" }, body: data.text }];
  }
  const body = { cost_matrix: matrix, models: [name] };
  return ["evaluate", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }];
}

// The cell a refusal names (values[i][j]) is marked in the editor.
function markBadCell(message) {
  for (const input of document.querySelectorAll("#vm-table input")) input.removeAttribute("aria-invalid");
  const match = message && /values\[(\d+)\]\[(\d+)\]/.exec(message);
  const input = match && $(`vm-${match[1]}-${match[2]}`);
  if (input) input.setAttribute("aria-invalid", "true");
}

async function updateMulticlass() {
  const seq = ++state.seq;
  document.body.dataset.state = "loading";
  const name = $("model").value;
  try {
    await seedMatrix(name);
    if (seq !== state.seq) return;
    writeQuery();
    const [url, init] = multiclassRequest(name, readMatrix());
    const answer = await api(url, init);
    if (seq !== state.seq) return;
    state.multiclass = answer;
    renderMulticlass();
    markBadCell(null);
    showError(null);
    document.body.dataset.state = "ready";
  } catch (error) {
    if (seq !== state.seq) return;
    markBadCell(error.message);
    showError(error.message);
    document.body.dataset.state = "error";
  }
}

const percent = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`);

function mcRow(point, label, entry, accuracy, klass) {
  const tr = document.createElement("tr");
  tr.dataset.point = point;
  if (klass) tr.className = klass;
  tr.dataset.value = String(entry.expected_value);
  tr.dataset.total = String(entry.total_value);
  tr.innerHTML =
    `<td class="name">${label}</td>` +
    `<td class="ev">${money(entry.expected_value)}</td>` +
    `<td class="total">${money(entry.total_value)}</td>` +
    `<td class="accuracy">${percent(accuracy)}</td>`;
  return tr;
}

function renderMulticlass() {
  const answer = state.multiclass;
  const entry = answer.results.find((r) => r.model === $("model").value) || answer.results[0];
  const best = entry.best_single_class;
  const rows = [
    mcRow("rule", "Decision rule: the class of highest expected value", entry, entry.accuracy, "rule"),
    mcRow("argmax", "The most probable class (argmax)", entry.argmax_probability, entry.argmax_probability.accuracy, "baseline"),
    mcRow("best_single", `Best single class: always ${escapeHtml(best.class)}`, best, entry.prevalence[best.class], "baseline"),
  ];
  for (const name of entry.classes) {
    if (name !== best.class) {
      rows.push(mcRow(`always:${name}`, `Always ${escapeHtml(name)}`, entry.always[name], entry.prevalence[name], ""));
    }
  }
  document.querySelector("#mc-table tbody").replaceChildren(...rows);
  $("mc-note").textContent =
    `${entry.model}, data: ${answer.note}. n = ${entry.n}; close decisions (best two within ` +
    `${money(answer.margin)}): ${entry.close_confusions.total}.`;
  $("mc-warnings").replaceChildren(
    ...answer.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })),
  );
  const classes = entry.classes;
  document.querySelector("#mc-confusion-table caption").textContent =
    `${entry.model}, n = ${entry.n}: counts, and the dollars of each cell (its count times its value). ` +
    "Rows: the truth; columns: the decision.";
  const headRow = document.createElement("tr");
  headRow.append(
    Object.assign(document.createElement("th"), { scope: "col", textContent: "truth \\ decided" }),
    ...classes.map((c) => Object.assign(document.createElement("th"), { scope: "col", textContent: c })),
  );
  document.querySelector("#mc-confusion-table thead").replaceChildren(headRow);
  document.querySelector("#mc-confusion-table tbody").replaceChildren(
    ...classes.map((truth, i) => {
      const tr = document.createElement("tr");
      tr.append(Object.assign(document.createElement("th"), { scope: "row", textContent: truth }));
      classes.forEach((decided, j) => {
        const td = document.createElement("td");
        const count = entry.confusion.counts[i][j];
        const value = entry.confusion.value[i][j];
        Object.assign(td.dataset, { truth, decided, count: String(count), value: String(value) });
        if (i === j) td.className = "diagonal";
        td.innerHTML = `<strong>${count}</strong><small>${money(value)}</small>`;
        tr.append(td);
      });
      return tr;
    }),
  );
  rendered();
}

// ------------------------------------------------------------------ wiring

function setThreshold(t) {
  $("threshold").value = String(t);
  $("threshold-slider").value = String(thresholdToSlider(t));
  update();
}

function bind() {
  for (const k of OUTCOMES) $(k).addEventListener("input", updateSoon);
  $("prevalence").addEventListener("input", updateSoon);
  $("preset").addEventListener("change", () => {
    if ($("preset").value !== "reference") return;
    for (const k of OUTCOMES) $(k).value = String(REFERENCE[k]);
    update();
  });
  $("model").addEventListener("change", () => {
    const was = document.body.dataset.kind;
    applyKind();
    if (isMulticlass() || was === "multiclass" || !state.chosen) {
      update();
      return;
    }
    writeQuery();
    render();
  });
  $("vm-card").addEventListener("click", () => {
    if (!state.cardMatrix) return;
    buildEditor(state.cardMatrix.classes, state.cardMatrix.values);
    update();
  });
  $("threshold-slider").addEventListener("input", () => {
    $("threshold").value = String(sliderToThreshold(Number($("threshold-slider").value)));
    updateSoon();
  });
  $("threshold").addEventListener("input", () => {
    const t = number("threshold");
    if (t !== null && Number.isFinite(t)) $("threshold-slider").value = String(thresholdToSlider(t));
    updateSoon();
  });
  $("to-card").addEventListener("click", () => {
    if (state.card) setThreshold(byModel(state.card).get(selectedName()).threshold);
  });
  $("to-elkan").addEventListener("click", () => {
    if (state.chosen) setThreshold(byModel(state.chosen).get(selectedName()).elkan_threshold.value);
  });
  $("to-best").addEventListener("click", () => {
    if (state.chosen) setThreshold(byModel(state.chosen).get(selectedName()).best_threshold.threshold);
  });
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("csv").addEventListener("change", () => useFile($("csv").files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
  $("held-out").addEventListener("click", () => {
    state.data = { kind: "held_out" };
    $("csv").value = "";
    describeData();
    update();
  });
}

async function init() {
  const query = new URLSearchParams(location.search);
  for (const k of OUTCOMES) $(k).value = query.has(k) ? query.get(k) : String(REFERENCE[k]);
  if (query.has("prevalence")) $("prevalence").value = query.get("prevalence");
  syncPreset();
  bind();
  let listing;
  try {
    listing = await api("models");
  } catch (error) {
    showError(error.message);
    document.body.dataset.state = "error";
    return;
  }
  // Binary models are priced by tp, fp, tn and fn (all of them in one table); a multiclass
  // model by its own K x K value matrix.
  const models = listing.models;
  if (models.length === 0) {
    showError("no model is served", false);
    document.body.dataset.state = "error";
    return;
  }
  state.models = models;
  state.defaultModel = models.some((m) => m.name === listing.default) ? listing.default : models[0].name;
  $("model-note").textContent = models.some((m) => m.task === "multiclass")
    ? "A multiclass model is valued on its own, under a value matrix per class."
    : "";
  const select = $("model");
  select.replaceChildren(
    ...models.map((m) =>
      Object.assign(document.createElement("option"), {
        value: m.name,
        textContent: m.task === "multiclass" ? `${m.name} (multiclass)` : m.name,
      }),
    ),
  );
  const wanted = query.get("model");
  const known = models.some((m) => m.name === wanted);
  select.value = known ? wanted : state.defaultModel;
  if (query.has("value_matrix")) {
    try {
      state.linkedMatrix = JSON.parse(query.get("value_matrix"));
    } catch {
      state.linkedMatrix = null;
    }
  }
  applyKind();
  const card = models.find((m) => m.name === select.value);
  const threshold = query.has("threshold")
    ? query.get("threshold")
    : card.threshold === null ? "" : String(card.threshold);
  $("threshold").value = threshold;
  const t = Number(threshold);
  if (threshold.trim() !== "" && Number.isFinite(t)) $("threshold-slider").value = String(thresholdToSlider(t));
  await update();
  if (wanted !== null && !known) {
    showError(`model ${JSON.stringify(wanted)} is not served; showing ${state.defaultModel}`, false);
  }
}

init();
