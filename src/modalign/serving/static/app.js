// The search page: talks to the same service (relative URLs only, no external assets).
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;
let mediaUrls = [];

function headers() {
  const key = $("api-key").value || sessionStorage.getItem("modalign-api-key") || "";
  if ($("api-key").value) sessionStorage.setItem("modalign-api-key", $("api-key").value);
  return key ? { "X-API-Key": key } : {};
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function call(path, options) {
  const opts = options || {};
  const response = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

function readFilter() {
  const text = $("filter").value.trim();
  if (!text) return null;
  try { return JSON.parse(text); } catch (e) { throw new Error("the filter is not valid JSON"); }
}

function k() { return Math.max(1, Math.min(1000, parseInt($("k").value, 10) || 12)); }

async function loadInfo() {
  try {
    info = await (await call("/info")).json();
    const media = info.media ? `; ${info.kind} previews` : "";
    $("info").textContent = `${info.items} ${info.modality || "item"} items, ${info.dim}-d; ` +
      `query by ${info.query_kinds.join(", ")}${media}.`;
  } catch (e) {
    $("info").textContent = `Cannot read the index info (${e.message}). Enter the API key under Options if needed.`;
    if (e.message.startsWith("401")) { $("options").open = true; }
  }
}

async function attachMedia(card, id) {
  if (!info || !info.media) return;
  try {
    const blob = await (await call(`/items/${encodeURIComponent(id)}/media`)).blob();
    const url = URL.createObjectURL(blob);
    mediaUrls.push(url);
    const kind = blob.type.split("/")[0];
    let el;
    if (kind === "image") {
      el = document.createElement("img");
      el.alt = `item ${id}`;
    } else if (kind === "audio") {
      el = document.createElement("audio");
      el.controls = true;
      el.setAttribute("aria-label", `audio of item ${id}`);
    } else {
      return;
    }
    el.src = url;
    card.prepend(el);
  } catch (e) { /* no preview for this item */ }
}

function render(results) {
  mediaUrls.forEach((u) => URL.revokeObjectURL(u));
  mediaUrls = [];
  const list = $("results");
  list.replaceChildren();
  results.forEach((hit, rank) => {
    const card = document.createElement("li");
    card.className = "card";
    card.tabIndex = 0;
    card.setAttribute("aria-label", `result ${rank + 1}: ${hit.id}, score ${hit.score.toFixed(3)}`);
    const title = document.createElement("div");
    title.innerHTML = `<span class="score"></span> <code></code>`;
    title.querySelector(".score").textContent = hit.score.toFixed(3);
    title.querySelector("code").textContent = hit.id;
    card.append(title);
    const meta = document.createElement("dl");
    for (const [key, value] of Object.entries(hit.metadata || {})) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = key;
      dd.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
      meta.append(dt, dd);
    }
    card.append(meta);
    card.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") similar(hit.id);
    });
    card.addEventListener("dblclick", () => similar(hit.id));
    list.append(card);
    attachMedia(card, hit.id);
  });
  status(`${results.length} result${results.length === 1 ? "" : "s"}` +
    (results.length ? " (Enter or double-click on a result finds similar items)" : ""));
}

async function run(what, request) {
  status(`Searching ${what}…`);
  try {
    const body = await (await request()).json();
    render(body.results);
  } catch (e) {
    status(e.message, true);
  }
}

function similar(id) {
  run(`items like ${id}`, () => {
    const params = new URLSearchParams({ k: String(k()) });
    const filter = readFilter();
    if (filter) params.set("filter", JSON.stringify(filter));
    return call(`/items/${encodeURIComponent(id)}/similar?${params}`);
  });
}

$("text-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("query").value.trim();
  if (!text) return;
  run(`for “${text}”`, () => call("/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text, k: k(), filter: readFilter() }),
  }));
});

$("file-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const file = $("file").files[0];
  if (!file) { status("Choose an image or audio file first.", true); return; }
  const form = new FormData();
  form.append(file.type.startsWith("audio/") ? "audio" : "image", file);
  form.append("k", String(k()));
  const filter = readFilter();
  if (filter) form.append("filter", JSON.stringify(filter));
  run(`with ${file.name}`, () => call("/search", { method: "POST", body: form }));
});

$("api-key").addEventListener("change", loadInfo);
loadInfo();
