// mlmodel's dashboard: every model live from the watch stream (GET /events), and a model
// page with its tasks, events, history and logs. Plain DOM code: no framework, no build
// step, nothing fetched from outside the server. Everything a server sends is written
// with textContent, never as HTML.
"use strict";

// The API's root: the page is served at <root>ui.
const ROOT = location.pathname.replace(/ui\/?$/, "");
const TOKEN_KEY = "mlmodel-token";
const MAX_LOG_LINES = 2000;
const HISTORY_SHOWN = 20;

const $ = (id) => document.getElementById(id);

// Every model's newest status, by name, as the stream sends it.
const models = new Map();
// The events of the model page's model, by (type, reason, message) as the server
// collapses them.
let modelEvents = new Map();
// Names seen since the stream (re)opened or last said `synced`: the models not among
// them when `synced` comes are gone.
let seenSinceSync = new Set();
let stream = null;
let dirty = new Set();
let renderTimer = null;
let logsAbort = null;
// The deployment the model page's status last named: a new one reloads the history.
let historyAt = null;

// ---- small helpers ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

// "42s", "5m", "3h", "2d" from unix seconds, as kubectl shows ages.
function age(seconds) {
  if (typeof seconds !== "number") return "";
  const s = Math.max(0, Math.floor(Date.now() / 1000 - seconds));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function ageOfRfc3339(text) {
  const ms = Date.parse(text || "");
  return Number.isNaN(ms) ? "" : age(ms / 1000);
}

function when(seconds) {
  return typeof seconds === "number" ? new Date(seconds * 1000).toLocaleString() : "";
}

function phaseBadge(phase) {
  return el("span", { class: "phase " + phase }, phase);
}

// A task's state, coloured as the phase it amounts to.
function taskBadge(state) {
  const shade =
    { Running: "Available", Failed: "Failed", Rejected: "Failed", Orphaned: "Failed", Shutdown: "Removed", Complete: "Removed" }[
      state
    ] || "Progressing";
  return el("span", { class: "phase " + shade }, state);
}

function notice(text, kind) {
  const box = $("notice");
  box.textContent = text;
  box.className = kind || "error";
  box.hidden = !text;
}

function currentModel() {
  const match = location.hash.match(/^#\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

function url(path) {
  return ROOT + path.replace(/^\//, "");
}

function modelPath(name) {
  return url(encodeURIComponent(name));
}

// A write with the token, if one was entered; the API's `detail` on failure.
async function write(method, path, what) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, { method, headers });
  } catch (error) {
    notice(what + " failed: the server did not answer (" + error.message + ")");
    return null;
  }
  const body = await response.json().catch(() => ({}));
  if (response.ok) {
    notice("");
    return body;
  }
  let detail = body.detail || response.statusText;
  if (response.status === 401) {
    detail += "\nEnter the server's token in the Token field above, then try again.";
    $("token").focus();
  }
  notice(what + " failed (" + response.status + "): " + detail);
  return null;
}

// ---- the watch stream ----

function connect() {
  if (stream) stream.close();
  seenSinceSync = new Set();
  stream = new EventSource(url("events"));
  stream.onopen = () => {
    seenSinceSync = new Set();
  };
  stream.addEventListener("status", (frame) => {
    const status = JSON.parse(frame.data);
    models.set(status.name, status);
    seenSinceSync.add(status.name);
    changed(status.name);
  });
  stream.addEventListener("removed", (frame) => {
    const { name } = JSON.parse(frame.data);
    models.delete(name);
    changed(name);
  });
  stream.addEventListener("synced", () => {
    for (const name of [...models.keys()]) {
      if (!seenSinceSync.has(name)) {
        models.delete(name);
        changed(name);
      }
    }
    seenSinceSync = new Set();
    setLive(true);
  });
  stream.addEventListener("event", (frame) => {
    const event = JSON.parse(frame.data);
    if (event.model === currentModel()) {
      keepEvent(event);
      renderEvents();
    }
  });
  stream.onerror = () => {
    setLive(false);
    // EventSource retries a dropped connection by itself, but gives up on an answer
    // that is not a stream (a 429 when too many watch, a proxy's 502): retry those too.
    if (stream.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  };
}

function setLive(on) {
  const badge = $("live");
  badge.className = "live " + (on ? "on" : "off");
  badge.textContent = on ? "live" : "reconnecting…";
}

// Renders what changed in one batch: a snapshot of a thousand models is one paint.
function changed(name) {
  dirty.add(name);
  if (renderTimer === null) renderTimer = setTimeout(renderChanged, 30);
}

function renderChanged() {
  renderTimer = null;
  const names = dirty;
  dirty = new Set();
  for (const name of names) renderRow(name);
  renderCounts();
  const shown = currentModel();
  if (shown !== null && names.has(shown)) renderModel();
}

// ---- the list ----

function renderRow(name) {
  const body = $("models").tBodies[0];
  const existing = body.querySelector('tr[data-model="' + CSS.escape(name) + '"]');
  const status = models.get(name);
  if (!status) {
    if (existing) existing.remove();
    return;
  }
  const row = el(
    "tr",
    { class: "row", "data-model": name, "data-phase": status.phase },
    el("td", { class: "name" }, el("a", { href: "#/" + encodeURIComponent(name) }, name)),
    el("td", { class: "phase-cell" }, phaseBadge(status.phase)),
    el("td", { class: "ready num" }, status.replicas_running + "/" + status.replicas_desired),
    el("td", { class: "image mono wrap" }, status.image || ""),
    el("td", { class: "age num", "data-time": status.deployment_time ?? "" }, age(status.deployment_time)),
    el("td", { class: "message wrap" }, status.message || ""),
  );
  if (existing) {
    existing.replaceWith(row);
  } else {
    // Keep the rows sorted by name.
    const after = [...body.rows].find((r) => r.dataset.model > name);
    body.insertBefore(row, after || null);
  }
  applyFilter(row);
}

function applyFilter(row) {
  const needle = $("filter").value.trim().toLowerCase();
  row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
}

function renderCounts() {
  const phases = {};
  for (const status of models.values()) phases[status.phase] = (phases[status.phase] || 0) + 1;
  const parts = Object.entries(phases)
    .sort()
    .map(([phase, n]) => n + " " + phase);
  $("counts").textContent = models.size + " models" + (parts.length ? ": " + parts.join(", ") : "");
  $("empty").hidden = models.size !== 0;
}

function refreshAges() {
  for (const cell of document.querySelectorAll("td.age")) {
    const time = parseFloat(cell.dataset.time);
    cell.textContent = Number.isNaN(time) ? "" : age(time);
  }
  if (currentModel() !== null) {
    renderModel();
    renderEvents();
  }
}

// ---- the model page ----

async function showModel(name) {
  $("list-view").hidden = true;
  $("model-view").hidden = false;
  $("m-name").textContent = name;
  document.title = name + " · mlmodel";
  modelEvents = new Map();
  historyAt = null;
  stopFollowing();
  $("m-logs").textContent = "";
  $("m-logs-follow").checked = false;
  renderModel();
  renderEvents();
  await Promise.all([loadEvents(name), loadHistory(name), loadLogs(name)]);
}

function showList() {
  stopFollowing();
  $("model-view").hidden = true;
  $("list-view").hidden = false;
  document.title = "mlmodel";
}

function renderModel() {
  const name = currentModel();
  const status = models.get(name);
  if (status && status.deployment_id !== historyAt) {
    // The first one seen is the one showModel loaded the history at.
    if (historyAt !== null) loadHistory(name);
    historyAt = status.deployment_id;
  }
  // A model a manifest declares is changed by editing its file: the API refuses.
  const fromFile = Boolean(status && status.source && !["api", "adopted"].includes(status.source));
  for (const button of [$("m-rollback"), $("m-delete")]) {
    button.disabled = fromFile;
    button.title = fromFile ? "declared by " + status.source + ": edit or remove that file instead" : "";
  }
  const badge = $("m-phase");
  badge.className = "phase " + (status ? status.phase : "Removed");
  badge.textContent = status ? status.phase : "unknown";
  $("m-message").textContent = status ? status.message : "This model has no status (yet).";
  const facts = $("m-facts");
  facts.replaceChildren();
  if (status) {
    const rows = [
      ["Ready", status.replicas_running + "/" + status.replicas_desired + (status.synced ? "" : " (not synced)")],
      ["Image", status.image || ""],
      ["Digest", status.image_digest || ""],
      ["Source", status.source || ""],
      ["Deployment", status.deployment_id ? status.deployment_id + " (" + age(status.deployment_time) + " ago)" : ""],
      ["Services", status.services.map((s) => s.service + " " + s.replicas).join(", ")],
      ["Rollout", status.rollout ? status.rollout.state + (status.rollout.message ? ": " + status.rollout.message : "") : ""],
      ["Nodes down", status.nodes_down.join(", ")],
      ["Warnings", status.warnings.join("\n")],
    ];
    for (const [term, value] of rows) {
      if (value) facts.append(el("dt", {}, term), el("dd", { class: "message" }, value));
    }
  }
  const tasks = $("m-tasks").tBodies[0];
  tasks.replaceChildren(
    ...(status ? status.tasks : []).map((task) =>
      el(
        "tr",
        { "data-task": task.name },
        el("td", { class: "mono" }, task.name),
        el("td", {}, task.node),
        el("td", {}, task.desired_state),
        el("td", {}, taskBadge(task.state)),
        el("td", { class: "num" }, ageOfRfc3339(task.since)),
        el("td", { class: "wrap" }, task.error),
      ),
    ),
  );
}

function keepEvent(event) {
  modelEvents.set(event.type + "\u0000" + event.reason + "\u0000" + event.message, event);
}

function renderEvents() {
  const events = [...modelEvents.values()].sort((a, b) => b.time - a.time);
  $("m-events").tBodies[0].replaceChildren(
    ...events.map((event) =>
      el(
        "tr",
        { "data-reason": event.reason },
        el("td", { class: "num", title: when(event.time) }, age(event.time)),
        el("td", {}, phaseBadge(event.type)),
        el("td", {}, event.reason),
        el("td", { class: "num" }, event.count),
        el("td", { class: "wrap" }, event.message),
      ),
    ),
  );
}

async function loadEvents(name) {
  const response = await fetch(modelPath(name) + "/events").catch(() => null);
  if (!response || !response.ok || currentModel() !== name) return;
  for (const event of await response.json()) keepEvent(event);
  renderEvents();
}

async function loadHistory(name) {
  const body = $("m-history").tBodies[0];
  const response = await fetch(modelPath(name) + "?n=" + HISTORY_SHOWN).catch(() => null);
  if (currentModel() !== name) return;
  if (!response || !response.ok) {
    body.replaceChildren();
    return;
  }
  const records = await response.json();
  body.replaceChildren(
    ...records.map((record, i) =>
      el(
        "tr",
        { "data-deployment": record.deployment_id },
        el("td", { class: "mono" }, record.deployment_id),
        el("td", { class: "num", title: when(record.deployment_time) }, age(record.deployment_time) + " ago"),
        el("td", { class: "mono wrap" }, record.image),
        el("td", { class: "num" }, record.scale),
        el("td", {}, record.build_id ?? ""),
        el("td", {}, record.run_id ?? ""),
        el(
          "td",
          {},
          i === 0
            ? el("span", { class: "muted" }, "newest")
            : el("button", { type: "button", onclick: () => rollback(name, record.deployment_id) }, "Roll back to this"),
        ),
      ),
    ),
  );
}

async function loadLogs(name) {
  const response = await fetch(modelPath(name) + "/logs?tail=200").catch(() => null);
  if (currentModel() !== name) return;
  const text = response ? await response.text() : "the server did not answer";
  $("m-logs").textContent = response && response.ok ? text : "logs: " + text;
  scrollLogs();
}

function scrollLogs() {
  const logs = $("m-logs");
  logs.scrollTop = logs.scrollHeight;
}

// Follows the logs on an open response, appending lines as they come.
async function followLogs(name) {
  stopFollowing();
  logsAbort = new AbortController();
  const logs = $("m-logs");
  logs.textContent = "";
  try {
    const response = await fetch(modelPath(name) + "/logs?tail=50&follow=true", { signal: logsAbort.signal });
    if (!response.ok) {
      logs.textContent = "logs: " + (await response.text());
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      logs.append(value);
      trimLogs(logs);
      scrollLogs();
    }
  } catch (error) {
    if (error.name !== "AbortError") logs.append("\n(the log stream ended: " + error.message + ")");
  }
}

function trimLogs(logs) {
  const lines = logs.textContent.split("\n");
  if (lines.length > MAX_LOG_LINES) logs.textContent = lines.slice(-MAX_LOG_LINES).join("\n");
}

function stopFollowing() {
  if (logsAbort) logsAbort.abort();
  logsAbort = null;
}

async function rollback(name, to) {
  const target = to ? "deployment " + to : "the previous deployment";
  if (!confirm("Roll " + name + " back to " + target + "?")) return;
  const query = to ? "?to=" + encodeURIComponent(to) : "";
  const record = await write("POST", modelPath(name) + "/rollback" + query, "Rollback of " + name);
  if (record) {
    notice("Recorded deployment " + record.deployment_id + " of " + name + ".", "info");
    loadHistory(name);
  }
}

async function remove(name) {
  if (!confirm("Delete " + name + "? Its services are removed; its history is kept.")) return;
  if (await write("DELETE", modelPath(name), "Delete of " + name)) {
    notice(name + " is stopped: its services are being removed.", "info");
  }
}

// ---- wiring ----

function route() {
  const name = currentModel();
  if (name === null) showList();
  else showModel(name);
}

function init() {
  const token = $("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("input", () => {
    if (token.value) sessionStorage.setItem(TOKEN_KEY, token.value);
    else sessionStorage.removeItem(TOKEN_KEY);
  });
  $("token-form").addEventListener("submit", (e) => e.preventDefault());
  $("filter").addEventListener("input", () => {
    for (const row of $("models").tBodies[0].rows) applyFilter(row);
  });
  $("m-rollback").addEventListener("click", () => rollback(currentModel(), null));
  $("m-delete").addEventListener("click", () => remove(currentModel()));
  $("m-logs-refresh").addEventListener("click", () => {
    $("m-logs-follow").checked = false;
    stopFollowing();
    loadLogs(currentModel());
  });
  $("m-logs-follow").addEventListener("change", (e) => {
    if (e.target.checked) followLogs(currentModel());
    else stopFollowing();
  });
  window.addEventListener("hashchange", route);
  setInterval(refreshAges, 10000);
  fetch(url("version"))
    .then((r) => r.json())
    .then((v) => {
      $("instance").textContent = "instance " + v.instance + " · " + v.version;
    })
    .catch(() => {});
  connect();
  route();
}

init();
