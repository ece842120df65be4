// The page of `metastasis serve`: send patches to POST /v1/predict, show and export the answers.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { rows: [], modelShown: false, limits: { max_images: 256, max_upload_bytes: 32 * 1024 * 1024 } };
// [CSV column, field of the answer]: the package's CSV vocabulary (id, probability, prediction
// first; see metastasis/predictions.py), then the rest of the answer.
const CSV_COLUMNS = [
  ["id", "id"], ["probability", "probability"], ["prediction", "label"],
  ["uncalibrated_probability", "uncalibrated_probability"], ["class_name", "class_name"],
  ["threshold", "threshold"], ["engine", "engine"],
];

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function showError(text) {
  const el = $("error");
  el.textContent = text;
  el.hidden = !text;
}

async function loadModel() {
  try {
    const health = await (await fetch("/healthz")).json();
    state.limits = health.limits || state.limits;
    $("key-field").hidden = !health.api_key_required;
    $("model-info").textContent = `Model: ${health.architecture} on ${health.engine}.`;
    $("model-warning").textContent = health.warning ? `This model was ${health.warning}.` : "";
    $("model-warning").hidden = !health.warning;
    const needKey = health.api_key_required && !$("api-key").value.trim();
    if (needKey) {
      $("model-info").textContent += " This server needs an API key.";
      return;
    }
    const res = await fetch("/v1/model", { headers: headers() });
    if (!res.ok) {
      $("model-info").textContent += res.status === 401 ? " The API key is not accepted." : "";
      return;
    }
    const m = await res.json();
    state.modelShown = true;
    $("model-info").textContent =
      `Model: ${m.architecture}, threshold ${m.threshold.toFixed(3)}, ` +
      `temperature ${m.temperature.toFixed(3)}, test-time augmentation ${m.tta}; engine ${m.engine}.`;
  } catch (err) {
    $("model-info").textContent = "The server cannot be reached.";
  }
}

// Requests of at most max_images files and about max_upload_bytes; a zip goes alone.
function chunks(files) {
  const out = [];
  let cur = [];
  let bytes = 0;
  const budget = state.limits.max_upload_bytes * 0.9;
  for (const f of files) {
    const isZip = /\.zip$/i.test(f.name);
    if (cur.length && (isZip || cur.length >= state.limits.max_images || bytes + f.size > budget)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(f);
    bytes += f.size;
    if (isZip) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
  }
  if (cur.length) out.push(cur);
  return out;
}

async function send(files) {
  const params = new URLSearchParams({
    explain: $("explain").checked ? "true" : "false",
    resize: $("resize").checked ? "true" : "false",
  });
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const res = await fetch(`/v1/predict?${params}`, { method: "POST", body: form, headers: headers() });
  let body;
  try {
    body = await res.json();
  } catch (err) {
    throw new Error(`the server answered ${res.status} without JSON`);
  }
  if (!res.ok) throw new Error(body.error || `the server answered ${res.status}`);
  return body.predictions;
}

async function handle(fileList) {
  const files = Array.from(fileList);
  if (!files.length) return;
  showError("");
  const parts = chunks(files);
  let done = 0;
  for (const part of parts) {
    $("status").textContent = `Predicting ${done + 1}-${done + part.length} of ${files.length}…`;
    try {
      const rows = await send(part);
      // Without Grad-CAM the server sends no picture: show PNG and JPEG files from here.
      const local = rows.length === part.length && !part.some((f) => /\.zip$/i.test(f.name));
      rows.forEach((row, i) => {
        if (!row.patch && local && /^image\/(png|jpeg)$/.test(part[i].type)) {
          row.localUrl = URL.createObjectURL(part[i]);
        }
        addRow(row);
      });
    } catch (err) {
      showError(`Not predicted: ${err.message}`);
    }
    done += part.length;
  }
  $("status").textContent = `${state.rows.length} patches predicted.`;
  summarise();
  if (!state.modelShown) loadModel(); // the key typed since the page loaded
}

function cell(tr, content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (content instanceof Node) td.appendChild(content);
  else td.textContent = content;
  tr.appendChild(td);
  return td;
}

function image(src, alt) {
  if (!src) return document.createTextNode("–");
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  img.width = 96;
  img.height = 96;
  return img;
}

function addRow(row) {
  state.rows.push(row);
  const tr = document.createElement("tr");
  tr.dataset.id = row.id;
  cell(tr, image(row.patch || row.localUrl, `patch ${row.id}`));
  const empty = row.cam_empty ? "no activation: nothing to show" : "";
  const overlayCell = cell(tr, image(row.overlay, empty || `Grad-CAM overlay of ${row.id}`),
    "overlay");
  if (empty) {
    const note = document.createElement("div");
    note.className = "help";
    note.textContent = empty;
    overlayCell.appendChild(note);
  }
  cell(tr, row.id, "file");
  const prob = document.createElement("div");
  prob.textContent = row.probability.toFixed(4);
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.style.width = `${(100 * row.probability).toFixed(1)}%`;
  bar.appendChild(fill);
  prob.appendChild(bar);
  cell(tr, prob, "probability");
  cell(tr, `${row.class_name} (${row.label})`, `label label-${row.label}`);
  $("results").tBodies[0].appendChild(tr);
}

function summarise() {
  const n = state.rows.length;
  const tumour = state.rows.filter((r) => r.label === 1).length;
  $("summary").textContent = n ? `${n} patches, ${tumour} above the threshold.` : "";
  $("download").disabled = !n;
  $("clear").disabled = !n;
}

// One CSV field: quoted when needed; a leading = + - @ is defused for spreadsheets.
function csvField(value) {
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && typeof value === "string") text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv() {
  const lines = [CSV_COLUMNS.map(([column]) => column).join(",")];
  for (const r of state.rows) lines.push(CSV_COLUMNS.map(([, key]) => csvField(r[key])).join(","));
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "predictions.csv";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function clearResults() {
  for (const r of state.rows) if (r.localUrl) URL.revokeObjectURL(r.localUrl);
  state.rows = [];
  $("results").tBodies[0].replaceChildren();
  $("status").textContent = "";
  showError("");
  summarise();
}

function setUp() {
  const drop = $("drop");
  const input = $("files");
  $("pick").addEventListener("click", () => input.click());
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => {
    handle(input.files).finally(() => (input.value = ""));
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    handle(e.dataTransfer.files);
  });
  $("download").addEventListener("click", downloadCsv);
  $("clear").addEventListener("click", clearResults);
  $("api-key").addEventListener("change", loadModel);
  loadModel();
}

setUp();
