// minitransformer explore: the page's script. It asks the server's JSON API (GET /api/info, POST /api/analyze,
// POST /api/step; docs/explore.md) and draws the views: tokens, the next-token distribution (temperature, top-k
// and top-p applied here, with the arithmetic of minitransformer.nn.generation.sample_next), attention maps, the logit
// lens and step-by-step generation. No library, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  info: null,        // GET /api/info
  analysis: null,    // the last /api/analyze answer (or a step's "analysis")
  ids: null,         // language model: the prompt's token ids
  targetIds: null,   // translation: the target's token ids (without <bos>)
  history: [],       // the generation steps taken since the input was last typed
  layer: 0, head: 0, // the enlarged head
  query: null,       // the hovered query position
  request: 0,        // answers to older requests are dropped
};

// ---- small helpers -----------------------------------------------------------------------------------------
function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

// a token's text made visible: spaces, newlines and tabs as signs
function shown(text) {
  if (text === "") return "∅";
  return text.replace(/ /g, "␣").replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍");
}

// white -> dark blue for 0 -> 1 (the attention maps and the logit lens)
const RAMP = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
function rgb(v) {
  const x = Math.min(Math.max(v, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
  return RAMP[i].map((a, k) => Math.round(a + f * (RAMP[i + 1][k] - a)));
}
const color = (v) => `rgb(${rgb(v).join(",")})`;
const ink = (v) => (v > 0.55 ? "#fff" : "#111");

async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || `${res.status}`);
  return data;
}

function showError(message) {
  const e = $("error");
  e.hidden = !message;
  e.textContent = message || "";
}

// ---- sampling: the arithmetic of sample_next ---------------------------------------------------------------
function samplingOptions() {
  const t = parseFloat($("temperature").value);
  const k = $("top-k").value.trim() === "" ? null : parseInt($("top-k").value, 10);
  const p = $("top-p").value.trim() === "" ? null : parseFloat($("top-p").value);
  return {temperature: t, top_k: k !== null && k >= 1 ? k : null, top_p: p !== null && p > 0 && p <= 1 ? p : null};
}

// logits / temperature; the top_k largest kept (ties with the k-th too); softmax; then the smallest set of
// tokens whose probability reaches top_p (a token is dropped when those ranked above it already reach it);
// renormalised: the probabilities sampling draws from
function samplingProbs(logits, o) {
  const V = logits.length;
  let x = logits.map((l) => l / o.temperature);
  if (o.top_k !== null) {
    const k = Math.min(o.top_k, V);
    const kth = [...x].sort((a, b) => b - a)[k - 1];
    x = x.map((v) => (v < kth ? -Infinity : v));
  }
  const m = Math.max(...x);
  let p = x.map((v) => Math.exp(v - m));
  let total = p.reduce((a, b) => a + b, 0);
  p = p.map((v) => v / total);
  if (o.top_p !== null && o.top_p < 1) {
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a] || a - b);  // stable: lower id first on ties
    let before = 0;
    const kept = new Array(V).fill(0);
    for (const i of order) {
      if (before < o.top_p) kept[i] = p[i];
      before += p[i];
    }
    p = kept;
  }
  total = p.reduce((a, b) => a + b, 0);
  return p.map((v) => v / total);
}

// ---- the views ---------------------------------------------------------------------------------------------
function queryTokens(a) {
  return state.info.kind === "lm" ? a.tokens : a.target_tokens;
}

function renderTokens(a) {
  const strip = (box, tokens) => {
    box.replaceChildren(...tokens.map((t, i) => el("span", {
      class: "tok", text: shown(t.text), title: `position ${i}, id ${t.id}`,
      "data-id": t.id, "data-text": t.text, "data-pos": i})));
  };
  strip($("tokens"), queryTokens(a));
  if (state.info.kind === "translate") strip($("source-tokens"), a.source_tokens);
}

function renderDistribution() {
  const a = state.analysis;
  if (!a) return;
  const p = samplingProbs(a.logits, samplingOptions());
  const body = $("dist").tBodies[0];
  const rows = a.top.map((t, rank) => {
    const model = el("div", {class: "bar model", title: "p (model)"});
    const sampling = el("div", {class: "bar", title: "p (sampling)"});
    model.style.width = `${(100 * t.prob).toFixed(1)}%`;
    sampling.style.width = `${(100 * p[t.id]).toFixed(1)}%`;
    return el("tr", {"data-id": t.id}, [
      el("td", {text: rank + 1}), el("td", {class: "tok-cell", text: shown(t.text)}), el("td", {text: t.id}),
      el("td", {text: t.logit.toFixed(3)}), el("td", {class: "p-model", text: t.prob.toFixed(4)}),
      el("td", {class: "p-sampling", text: p[t.id].toFixed(4)}), el("td", {class: "bar-col"}, [model, sampling])]);
  });
  body.replaceChildren(...rows);
  renderCandidates(p);
}

function attentionMaps(a) {
  if (state.info.kind === "lm") return {maps: a.attention, rows: a.tokens, cols: a.tokens};
  const kind = $("attention-kind").value;
  const rows = kind === "encoder_attention" ? a.source_tokens : a.target_tokens;
  const cols = kind === "decoder_attention" ? a.target_tokens : a.source_tokens;
  return {maps: a[kind], rows, cols};
}

function drawThumb(canvas, map, highlight) {
  const R = map.length, C = map[0].length;
  const img = new ImageData(C, R);
  for (let i = 0; i < R; i++) {
    for (let j = 0; j < C; j++) {
      const [r, g, b] = rgb(map[i][j]);
      const o = 4 * (i * C + j);
      img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
    }
  }
  const off = document.createElement("canvas");
  off.width = C; off.height = R;
  off.getContext("2d").putImageData(img, 0, 0);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
  if (highlight !== null && highlight < R) {  // the hovered query's row, framed just outside its cells
    const h = canvas.height / R;
    ctx.strokeStyle = "rgba(230, 85, 13, 0.9)";
    ctx.lineWidth = 1;
    ctx.strokeRect(0.5, Math.max(highlight * h - 1.5, 0.5), canvas.width - 1, h + 2);
  }
}

function renderAttention() {
  const a = state.analysis;
  if (!a) return;
  const {maps, rows, cols} = attentionMaps(a);
  state.layer = Math.min(state.layer, maps.length - 1);
  state.head = Math.min(state.head, maps[0].length - 1);
  const grid = $("attention-grid");
  grid.style.gridTemplateColumns = `auto repeat(${maps[0].length}, auto)`;
  const cells = [el("span")];
  maps[0].forEach((_, h) => cells.push(el("span", {class: "axis", text: `head ${h}`})));
  maps.forEach((layer, l) => {
    cells.push(el("span", {class: "axis", text: `layer ${l}`}));
    layer.forEach((map, h) => {
      const canvas = el("canvas", {width: 112, height: Math.max(16, Math.round(112 * map.length / map[0].length))});
      const button = el("button", {type: "button", class: "thumb", title: `layer ${l}, head ${h}: click to enlarge`,
        "data-layer": l, "data-head": h}, [canvas]);
      if (l === state.layer && h === state.head) button.classList.add("selected");
      button.addEventListener("click", () => { state.layer = l; state.head = h; renderAttention(); });
      drawThumb(canvas, map, state.query);
      cells.push(button);
    });
  });
  grid.replaceChildren(...cells);
  renderHead(maps[state.layer][state.head], rows, cols);
}

function renderHead(map, rows, cols) {
  const kind = state.info.kind === "lm" ? "attention" : $("attention-kind").selectedOptions[0].textContent;
  $("head-title").textContent = `layer ${state.layer}, head ${state.head}` +
    (state.info.kind === "lm" ? "" : ` — ${kind}`);
  const size = Math.max(6, Math.min(26, Math.floor(520 / Math.max(rows.length, cols.length))));
  const box = $("head-map");
  box.style.gridTemplateColumns = `auto repeat(${cols.length}, ${size}px)`;
  const cells = [el("span")];
  cols.forEach((t, j) => cells.push(el("span", {class: "col-label", text: shown(t.text), title: `key ${j}`})));
  rows.forEach((t, i) => {
    cells.push(el("span", {class: "row-label-cell", text: shown(t.text), title: `query ${i}`}));
    cols.forEach((k, j) => {
      const v = map[i][j];
      const c = el("span", {class: "cell", "data-row": i, "data-col": j, "data-value": v,
        title: `${shown(t.text)} (${i}) → ${shown(k.text)} (${j}): ${v.toFixed(4)}`});
      c.style.width = c.style.height = `${size}px`;
      c.style.background = color(v);
      if (state.query === i) c.classList.add("hl");
      c.addEventListener("mouseenter", () => hoverQuery(i));
      cells.push(c);
    });
  });
  box.replaceChildren(...cells);
  const strip = (boxId, tokens, hover) => $(boxId).replaceChildren(...tokens.map((t, i) => {
    const s = el("span", {class: "tok", text: shown(t.text), "data-pos": i, "data-text": t.text});
    if (hover) {
      s.addEventListener("mouseenter", () => hoverQuery(i));
      if (state.query === i) s.classList.add("hl");
    }
    return s;
  }));
  strip("query-tokens", rows, true);
  strip("key-tokens", cols, false);
  tintKeys(map);
}

// the keys strip shaded by the hovered query's row of the enlarged head, relative to the row's largest weight
// (a row of many small weights still shows its pattern; the title gives each weight)
function tintKeys(map) {
  const keys = $("key-tokens").children;
  const row = state.query !== null && state.query < map.length ? map[state.query] : null;
  const top = row ? Math.max(...row) || 1 : 1;
  for (let j = 0; j < keys.length; j++) {
    const v = row ? row[j] : 0;
    keys[j].style.background = row ? color(v / top) : "";
    keys[j].style.color = row ? ink(v / top) : "";
    keys[j].title = row ? `${v.toFixed(4)}` : "";
    keys[j].setAttribute("data-weight", row ? v : "");
  }
}

function hoverQuery(i) {
  if (state.query === i) return;
  state.query = i;
  const {maps} = attentionMaps(state.analysis);
  document.querySelectorAll("#attention-grid .thumb").forEach((b) => {
    drawThumb(b.firstChild, maps[+b.dataset.layer][+b.dataset.head], i);
  });
  document.querySelectorAll("#query-tokens .tok").forEach((s) => s.classList.toggle("hl", +s.dataset.pos === i));
  document.querySelectorAll("#head-map .cell").forEach((c) => c.classList.toggle("hl", +c.dataset.row === i));
  tintKeys(maps[state.layer][state.head]);
}

function renderLens() {
  const a = state.analysis;
  if (!a) return;
  const tokens = queryTokens(a);
  const head = el("tr", {}, [el("th", {text: "position"}), ...tokens.map((t, i) =>
    el("th", {class: "tok-head", text: shown(t.text), title: `position ${i}, id ${t.id}`}))]);
  const rows = a.lens.map((layer, l) => el("tr", {}, [
    el("th", {text: l === a.lens.length - 1 ? `layer ${l} (output)` : `layer ${l}`}),
    ...layer.map((cell, i) => {
      const next = i + 1 < tokens.length ? tokens[i + 1].id : null;
      const td = el("td", {class: "lens-cell", text: shown(cell.text), "data-layer": l, "data-pos": i,
        "data-id": cell.id, "data-prob": cell.prob,
        title: cell.top.map(([id, text, p]) => `${shown(text)}  ${p.toFixed(4)}`).join("\n")});
      td.style.background = color(cell.prob);
      td.style.color = ink(cell.prob);
      if (next !== null && cell.id === next) td.classList.add("hit");
      return td;
    })]));
  const actual = el("tr", {class: "actual"}, [el("th", {text: "next in the input"}),
    ...tokens.map((t, i) => el("td", {text: i + 1 < tokens.length ? shown(tokens[i + 1].text) : "?"}))]);
  $("lens").replaceChildren(el("thead", {}, [head]), el("tbody", {}, [...rows, actual]));
}

function renderCandidates(p) {
  const a = state.analysis;
  const done = state.info.kind === "translate" && state.targetIds.length &&
    state.targetIds[state.targetIds.length - 1] === state.info.eos;
  const full = state.info.kind === "lm" ? state.ids.length >= state.info.block_size
    : state.targetIds.length + 2 > state.info.max_len;
  $("sample").disabled = done || full;
  $("undo").disabled = !state.history.length;
  $("gen-note").textContent = done ? "<eos>: the translation is finished (undo to go back)"
    : full ? "the context is full: no room for another token" : "";
  $("candidates").replaceChildren(...a.top.map((t) => {
    const b = el("button", {type: "button", class: "cand", disabled: done || full, "data-id": t.id,
      title: `id ${t.id}; p (model) ${t.prob.toFixed(4)}`}, [
      el("span", {class: "cand-text", text: shown(t.text)}), el("span", {class: "cand-p", text: p[t.id].toFixed(3)})]);
    b.style.borderColor = color(0.25 + 0.75 * p[t.id]);
    b.addEventListener("click", () => step(t.id));
    return b;
  }));
  const gen = new Set(state.history.map((h) => h.position));
  $("gen-text").replaceChildren(...queryTokens(a).map((t, i) =>
    el("span", {class: gen.has(i) ? "gen-tok new" : "gen-tok", text: t.text, title: `id ${t.id}`})));
  $("history").replaceChildren(...state.history.map((h) => el("li", {text:
    `${shown(h.token.text)} — ${h.seed === null ? "picked" : `sampled (seed ${h.seed})`}; ` +
    `p (model) ${h.token.prob.toFixed(4)}, p (sampling) ${h.token.sampling_prob.toFixed(4)}`})));
}

function render() {
  const a = state.analysis;
  if (!a) return;
  renderTokens(a);
  renderDistribution();
  renderAttention();
  renderLens();
}

// ---- requests ----------------------------------------------------------------------------------------------
function inputBody() {
  if (state.info.kind === "lm") return {ids: state.ids};
  return {source: $("source").value, target_ids: state.targetIds};
}

function accept(a) {
  state.analysis = a;
  if (state.info.kind === "lm") state.ids = a.tokens.map((t) => t.id);
  else state.targetIds = a.target_tokens.slice(1).map((t) => t.id);
  if (state.query !== null && state.query >= queryTokens(a).length) state.query = null;
  showError("");
  render();
}

async function analyzeTyped() {
  const n = ++state.request;
  state.history = [];
  const body = state.info.kind === "lm" ? {prompt: $("prompt").value}
    : {source: $("source").value, target: $("target").value};
  if ((state.info.kind === "lm" ? body.prompt : body.source) === "") return;  // the placeholder says what to do
  try {
    const a = await api("/api/analyze", body);
    if (n === state.request) accept(a);
  } catch (e) {
    if (n === state.request) showError(e.message);
  }
}

async function step(token) {
  const n = ++state.request;
  const o = samplingOptions();
  const seed = token === null ? parseInt($("seed").value, 10) || 0 : null;
  try {
    const r = await api("/api/step", {...inputBody(), ...o, token, seed});
    if (n !== state.request) return;
    if (state.info.kind === "lm") $("prompt").value = r.text;
    else $("target").value = r.target;
    state.history.push({token: r.token, seed, position: queryTokens(r.analysis).length - 1});
    if (token === null) $("seed").value = seed + 1;
    accept(r.analysis);
  } catch (e) {
    if (n === state.request) showError(e.message);
  }
}

async function undo() {
  if (!state.history.length) return;
  const n = ++state.request;
  state.history.pop();
  const body = inputBody();
  if (state.info.kind === "lm") body.ids = state.ids.slice(0, -1);
  else body.target_ids = state.targetIds.slice(0, -1);
  try {
    const a = await api("/api/analyze", body);
    if (n !== state.request) return;
    if (state.info.kind === "lm") $("prompt").value = a.text;
    else $("target").value = a.target;
    accept(a);
  } catch (e) {
    if (n === state.request) showError(e.message);
  }
}

// ---- start -------------------------------------------------------------------------------------------------
function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

function showView(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${name}`; });
}

async function start() {
  let info;
  try {
    info = await api("/api/info");
  } catch (e) {
    $("model-info").textContent = `cannot reach the server's API: ${e.message}`;
    return;
  }
  state.info = info;
  const lm = info.kind === "lm";
  $("model-info").textContent = lm
    ? `${info.name}: a language model, ${info.parameters.toLocaleString("en")} parameters (step ${info.step}); ` +
      `${info.n_layer} layers × ${info.n_head} heads, context ${info.block_size} tokens, ` +
      `${info.tokenizer} vocabulary of ${info.vocab_size}`
    : `${info.name}: a translation model, ${info.parameters.toLocaleString("en")} parameters (step ${info.step}); ` +
      `${info.n_encoder_layer} encoder and ${info.n_layer} decoder layers × ${info.n_head} heads, ` +
      `vocabularies ${info.src_vocab} (${info.src_tokenizer}) → ${info.tgt_vocab} (${info.tgt_tokenizer})`;
  $("top-n").textContent = info.top;
  $("lm-input").hidden = !lm;
  $("tr-input").hidden = lm;
  $("source-row").hidden = lm;
  $("attention-kind-row").hidden = lm;
  $("tokens-label").textContent = lm ? "tokens" : "target tokens";
  document.querySelector('#tabs button[data-view="lens"]').textContent = lm ? "Logit lens" : "Logit lens (decoder)";
  const typed = debounce(analyzeTyped, 200);
  for (const id of ["prompt", "source", "target"]) $(id).addEventListener("input", typed);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = parseFloat($("temperature").value).toFixed(2);
    renderDistribution();
  });
  for (const id of ["top-k", "top-p"]) $(id).addEventListener("input", renderDistribution);
  $("attention-kind").addEventListener("change", () => { state.query = null; renderAttention(); });
  $("tabs").addEventListener("click", (e) => { if (e.target.dataset.view) showView(e.target.dataset.view); });
  $("sample").addEventListener("click", () => step(null));
  $("undo").addEventListener("click", undo);
  document.body.dataset.kind = info.kind;
  document.body.dataset.ready = "1";
}

start();
