// joyvl-agent web UI: watch the assistant watch, and steer it.
//
// One WebSocket (/ui/ws) brings events, status snapshots and command replies; the page sends
// commands on it. Everything from the stream, the model or the server is put in the page as
// text (textContent) or as a sandboxed iframe's srcdoc, never as markup.
"use strict";

const TIMELINE_SECONDS = 120;
const TIMELINE_MAX_CELLS = 600;
const TRANSCRIPT_MAX = 500;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const DELEGATION_STATES = ["queued", "running", "done", "failed", "cancelled", "timed_out"];

const state = {
  socket: null,
  lastSeq: 0,
  sessionId: null,
  backoffMs: BACKOFF_MIN_MS,
  everConnected: false,
  reconnectTimer: null,
  nextCommandId: 1,
  pending: new Map(), // command id -> {op, onOk}
  status: null,
  cards: new Map(), // task_id -> card element
  camera: {stream: null, timer: null, busy: false, frames: 0},
  partials: new Map(), // transcript source -> the live "listening…" bubble
  feedback: null, // the decision the feedback form is about: {seq, t, action, text}
  audio: {
    socket: null,
    backoffMs: BACKOFF_MIN_MS,
    reconnectTimer: null,
    listening: false, // the server takes this page's microphone
    speaking: false, // the server plays speech here
    context: null,
    workletLoaded: false,
    mic: {stream: null, source: null, node: null, sink: null, starting: null, idleTimer: null},
    handsFree: false,
    ptt: false,
    pttReleasing: false,
    releaseTimer: null,
    speakerOn: true,
    pendingClip: null, // a "play" header waiting for its WAV
    clips: [], // received clips in order: {id, buffer, failed}
    current: null, // the AudioBufferSourceNode playing
    generation: 0, // bumped by stop: clips decoded after it are dropped
    sentBytes: 0,
    sentFrames: 0,
    received: 0,
    played: 0,
    stops: 0,
  },
};

const $ = (id) => document.getElementById(id);

// ---- small DOM helpers ---------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function formatTime(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "–";
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function orDash(value) {
  return value === undefined || value === null || value === "" ? "–" : String(value);
}

function setText(id, value) {
  const node = $(id);
  if (node) node.textContent = orDash(value);
}

// Keep a scrolled list pinned to the bottom only if the reader was already there.
function nearBottom(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 40;
}

// ---- connection ------------------------------------------------------------------------------

function socketUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ui/ws?after=${state.lastSeq}`;
}

function setConnected(connected) {
  const conn = $("conn");
  conn.textContent = connected ? "connected" : "reconnecting";
  conn.classList.toggle("conn-ok", connected);
  conn.classList.toggle("conn-down", !connected);
}

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  const socket = new WebSocket(socketUrl());
  state.socket = socket;
  socket.addEventListener("open", () => {
    if (socket !== state.socket) return;
    const reconnected = state.everConnected;
    state.backoffMs = BACKOFF_MIN_MS;
    state.everConnected = true;
    setConnected(true);
    // a restarted server ends the old MJPEG stream without an error event: reopen it
    if (reconnected && $("video-mode").value === "server") showServerVideo();
  });
  socket.addEventListener("message", (msg) => {
    if (socket === state.socket) onMessage(msg.data);
  });
  socket.addEventListener("close", (ev) => {
    if (socket !== state.socket) return;
    if (ev.code === 4401) {
      showCommandStatus("unauthorized: open this page once as /?token=YOUR_TOKEN", true);
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  state.socket = null;
  setConnected(false);
  failPending("connection lost");
  if (state.reconnectTimer) return;
  const wait = state.backoffMs;
  state.backoffMs = Math.min(state.backoffMs * 2, BACKOFF_MAX_MS);
  state.reconnectTimer = setTimeout(connect, wait);
}

// Drop the current socket and open a fresh one at once (after a session change).
function reconnectNow() {
  const old = state.socket;
  state.socket = null;
  if (old) old.close();
  failPending("connection reset");
  connect();
}

function onMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (err) {
    return;
  }
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "event" && msg.event) onEvent(msg.event);
  else if (msg.type === "status" && msg.status) onStatus(msg.status);
  else if (msg.type === "reply") onReply(msg);
}

// ---- commands --------------------------------------------------------------------------------

function sendCommand(op, fields, onOk) {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showCommandStatus(`${op}: not connected, try again in a moment`, true);
    return false;
  }
  const id = state.nextCommandId++;
  state.pending.set(id, {op, onOk});
  socket.send(JSON.stringify(Object.assign({id, op}, fields || {})));
  return true;
}

function onReply(msg) {
  const pending = state.pending.get(msg.id);
  state.pending.delete(msg.id);
  const op = pending ? pending.op : "command";
  if (!msg.ok) {
    showCommandStatus(`${op}: ${orDash(msg.error)}`, true);
    return;
  }
  showCommandStatus(`${op}: ok`, false);
  if (pending && pending.onOk) pending.onOk(msg.result || {});
}

function failPending(reason) {
  for (const {op} of state.pending.values()) showCommandStatus(`${op}: ${reason}`, true);
  state.pending.clear();
}

function showCommandStatus(text, isError) {
  const node = $("command-status");
  node.textContent = text;
  node.classList.toggle("error-text", isError);
}

// ---- status ----------------------------------------------------------------------------------

function onStatus(status) {
  if (status.session_id && state.sessionId && status.session_id !== state.sessionId) {
    // A new session (the server restarted): its seq starts again, so replay it from the start.
    startSession(status.session_id);
    reconnectNow();
    return;
  }
  if (status.session_id) state.sessionId = status.session_id;
  state.status = status;
  setText("status-session", status.session_id);
  setText("status-model", status.model);
  setText("status-source", status.source);
  setText("status-codec", status.codec);
  setText("status-state", status.state);
  setText("status-t", typeof status.t === "number" ? formatTime(status.t) : null);
  setText("status-ticks", status.ticks);
  setText("status-calls", status.model_calls);
  setText("status-latency",
    typeof status.last_latency_ms === "number" ? `${Math.round(status.last_latency_ms)} ms` : null);
  setText("status-vtpm", status.visual_tokens_per_min);
  $("current-task").textContent = status.task ? status.task : "none";
  syncInputs(status);
  syncPauseButton(status.state);
}

// Reflect the server's settings in the controls, unless the user is editing them.
function syncInputs(status) {
  const interval = $("interval-input");
  if (document.activeElement !== interval && typeof status.interval_s === "number") {
    interval.value = String(status.interval_s);
  }
  const persona = $("persona-select");
  if (document.activeElement !== persona && status.persona) persona.value = status.persona;
}

function syncPauseButton(sessionState) {
  const button = $("pause-button");
  const paused = sessionState === "paused";
  button.textContent = paused ? "Resume" : "Pause";
  button.dataset.op = paused ? "resume" : "pause";
  button.disabled = sessionState === "stopped";
  document.body.classList.toggle("is-paused", paused);
}

function intervalSeconds() {
  const s = state.status && state.status.interval_s;
  return typeof s === "number" && s > 0 ? s : 1;
}

// ---- events ----------------------------------------------------------------------------------

function onEvent(event) {
  if (event.session_id && state.sessionId && event.session_id !== state.sessionId) {
    // A new session numbers its events from 1 again: replay it from the start.
    startSession(event.session_id);
    reconnectNow();
    return;
  }
  if (typeof event.seq !== "number" || event.seq <= state.lastSeq) return;
  state.lastSeq = event.seq;
  if (event.session_id) state.sessionId = event.session_id;
  const handler = EVENT_HANDLERS[event.kind];
  if (handler) handler(event);
}

// Forget everything shown for the previous session.
function startSession(sessionId) {
  state.sessionId = sessionId;
  state.lastSeq = 0;
  state.cards.clear();
  $("timeline").replaceChildren();
  $("transcript").replaceChildren();
  state.partials.clear();
  $("delegations").replaceChildren(el("p", "empty", "No delegations yet."));
  $("memory-results").replaceChildren();
  closeFeedback();
  setText("status-session", sessionId);
}

const EVENT_HANDLERS = {
  decision: addTick,
  speech: addSpeech,
  question_asked: addQuestion,
  transcript: onTranscript,
  task_set: (e) => addLine("task-line", `Task set: ${e.text}${taskDetails(e)}`, e.t),
  task_ended: (e) => addLine("task-line", `Task ${orDash(e.state)}: ${e.text}`, e.t),
  delegation: updateDelegation,
  delegation_progress: addDelegationProgress,
  summary_committed: (e) => addLine("summary-line",
    `Summary (${e.tier}, ${formatTime(e.start_t)}–${formatTime(e.end_t)}): ${e.text}`, e.t),
  error: (e) => addLine("error-line",
    `Error in ${orDash(e.stage)} (${orDash(e.category)}): ${e.message}`, e.t),
  model_error: (e) => addLine("error-line", `Model error (${orDash(e.category)}): ${e.message}`, e.t),
  memory_error: (e) => addLine("error-line", `Memory error: ${e.message}`, e.t),
  source_lost: (e) => addLine("error-line",
    `Source lost: ${orDash(e.reason)}${e.retry_in_s ? `, retrying in ${e.retry_in_s} s` : ""}`, e.t),
  source_restored: (e) => addLine("info-line", `Source restored after ${orDash(e.downtime_s)} s`, e.t),
  session_started: (e) => addLine("info-line",
    `Session ${e.resumed ? "resumed" : "started"}: ${orDash(e.source)} · ${orDash(e.model)}`, e.t),
  session_ended: (e) => addLine("info-line",
    `Session ended (${orDash(e.reason)})${e.message ? `: ${e.message}` : ""}`, e.t),
  annotation: (e) => addLine("annotation-line", `${orDash(e.label)}: ${e.text}`, e.t),
  feedback: addFeedback,
};

function taskDetails(event) {
  const parts = [];
  if (event.once) parts.push("once");
  if (typeof event.expires_at === "number") parts.push(`until ${formatTime(event.expires_at)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

// ---- timeline --------------------------------------------------------------------------------

function addTick(event) {
  const action = ["silent", "speak", "delegate"].includes(event.action) ? event.action : "silent";
  const tick = el("span", `tick action-${action}`);
  if (event.forced) tick.classList.add("forced");
  tick.dataset.t = String(event.t);
  tick.dataset.seq = String(event.seq);
  const latency = typeof event.latency_ms === "number" ? `${Math.round(event.latency_ms)} ms` : "–";
  const said = event.text ? ` · ${event.text}` : "";
  tick.title = `${Number(event.t).toFixed(1)} s · ${action} · ${latency}${said} (click to correct)`;
  tick.tabIndex = 0;
  tick.setAttribute("role", "button");
  const target = {seq: event.seq, t: decisionTime(event), action, text: event.text || null};
  tick.addEventListener("click", () => openFeedback(target));
  tick.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      openFeedback(target);
    }
  });
  const timeline = $("timeline");
  timeline.appendChild(tick);
  trimTimeline(timeline, Number(event.t));
}

function trimTimeline(timeline, now) {
  while (timeline.firstChild && (timeline.childElementCount > TIMELINE_MAX_CELLS
      || Number(timeline.firstChild.dataset.t) < now - TIMELINE_SECONDS)) {
    timeline.firstChild.remove();
  }
}

// ---- transcript ------------------------------------------------------------------------------

function appendToTranscript(node) {
  const transcript = $("transcript");
  const stick = nearBottom(transcript);
  transcript.appendChild(node);
  while (transcript.childElementCount > TRANSCRIPT_MAX) transcript.firstChild.remove();
  if (stick) transcript.scrollTop = transcript.scrollHeight;
}

function addBubble(classes, label, text, t) {
  const bubble = el("div", `bubble ${classes}`);
  const meta = el("div", "meta");
  meta.appendChild(el("span", "label", label));
  meta.appendChild(el("time", "when", formatTime(t)));
  bubble.appendChild(meta);
  bubble.appendChild(el("div", "text", text));
  appendToTranscript(bubble);
  return bubble;
}

function addSpeech(event) {
  const reason = String(event.reason || "other").replace(/[^a-z0-9_-]/gi, "");
  let classes = `speech reason-${reason}`;
  if (reason === "answer") classes += " answer";
  const bubble = addBubble(classes, reason, event.text, event.t);
  if (event.task_id) bubble.dataset.taskId = event.task_id;
  if (reason !== "external" && typeof event.frame_t === "number") {
    // said at a tick: the decision behind it can be corrected
    const button = el("button", "feedback-button", "correct");
    button.type = "button";
    button.title = "Wrong, late, or should have said something else";
    button.addEventListener("click", () => openFeedback(
      {seq: event.seq, t: event.frame_t, action: "speak", text: event.text}));
    bubble.querySelector(".meta").appendChild(button);
  }
}

// What the user said: a greyed "listening…" bubble while recognition runs, replaced in place
// by the final line, which says what was done with it (asked, set as the task).
const ROUTE_LABELS = {ask: "asked", task: "set as task"};
const DROPPED_LABELS = {
  echo: "not used: heard while the assistant spoke",
  empty: "not used: nothing recognized",
  failed: "not used: recognition failed",
  backlog: "not used: recognition fell behind",
  stale: "not used: recognized too late",
};

function onTranscript(event) {
  const source = String(event.source || "mic");
  const live = state.partials.get(source);
  if (!event.final) {
    if (live && live.isConnected) {
      live.querySelector(".text").textContent = String(event.text);
      return;
    }
    const bubble = addBubble("question voice partial", "you (listening…)", event.text,
      event.start_t);
    bubble.dataset.source = source;
    state.partials.set(source, bubble);
    return;
  }
  state.partials.delete(source);
  const route = ROUTE_LABELS[event.route] ? event.route : "none";
  const bubble = voiceBubble(event.text, event.start_t, route, DROPPED_LABELS[event.dropped]);
  // the question it became may already be shown (events race): show it once, as said
  const twin = route === "ask" ? recentBubble(".bubble.question:not(.voice)", event.text) : null;
  const old = live && live.isConnected ? live : twin;
  if (old) {
    old.replaceWith(bubble);
    if (twin && twin !== old) twin.remove();
  } else {
    appendToTranscript(bubble);
  }
}

function voiceBubble(text, t, route, dropped) {
  const bubble = el("div", `bubble question voice final route-${route}${dropped ? " dropped" : ""}`);
  bubble.dataset.route = route;
  const meta = el("div", "meta");
  meta.appendChild(el("span", "label", "you"));
  const label = dropped || ROUTE_LABELS[route];
  if (label) meta.appendChild(el("span", "route", label));
  meta.appendChild(el("time", "when", formatTime(t)));
  bubble.appendChild(meta);
  bubble.appendChild(el("div", "text", text));
  return bubble;
}

// A question typed or spoken; a spoken one is already shown as the user's line.
function addQuestion(event) {
  const spoken = recentBubble(".bubble.voice.route-ask:not([data-asked])", event.question);
  if (spoken) {
    spoken.dataset.asked = "1";
    return;
  }
  addBubble("question", "question", event.question, event.t);
}

function sameText(a, b) {
  const norm = (s) => String(s || "").trim().toLowerCase().replace(/\s+/g, " ");
  return norm(a) === norm(b);
}

// The newest of the last few transcript entries matching `selector` with this text.
function recentBubble(selector, text) {
  const entries = Array.from($("transcript").children).slice(-12).reverse();
  return entries.find((node) => node.matches(selector)
    && sameText(node.querySelector(".text") && node.querySelector(".text").textContent, text))
    || null;
}

function addLine(className, text, t) {
  const line = el("div", `line ${className}`);
  line.appendChild(el("time", "when", formatTime(t)));
  line.appendChild(el("span", "text", text));
  appendToTranscript(line);
}

// ---- feedback on a decision --------------------------------------------------------------------
// A decision cell (or a spoken bubble) opens a small form: wrong / late / missing here, with an
// optional corrected text. The server records a `feedback` event; a read token is refused.

function decisionTime(event) {
  return typeof event.frame_t === "number" ? event.frame_t : Number(event.t);
}

function openFeedback(target) {
  state.feedback = target;
  const said = target.text ? `: “${target.text}”` : "";
  $("feedback-target").textContent =
    `Decision at ${Number(target.t).toFixed(1)} s (${target.action})${said}`;
  const response = target.action !== "silent";
  $("feedback-late").disabled = !response;
  $("feedback-missing").disabled = response;
  $("feedback-text").value = "";
  $("feedback-silent").checked = false;
  $("feedback-silent").disabled = !response;
  $("feedback-at").value = String(Math.max(0, Math.floor(Number(target.t)) - 1));
  $("feedback-at-row").hidden = !response;
  $("feedback-form").hidden = false;
  for (const tick of document.querySelectorAll("#timeline .tick.selected")) {
    tick.classList.remove("selected");
  }
  const cell = document.querySelector(`#timeline .tick[data-seq="${target.seq}"]`);
  if (cell) cell.classList.add("selected");
  $("feedback-text").focus();
}

function closeFeedback() {
  state.feedback = null;
  $("feedback-form").hidden = true;
  for (const tick of document.querySelectorAll("#timeline .tick.selected")) {
    tick.classList.remove("selected");
  }
}

function sendFeedback(verdict) {
  const target = state.feedback;
  if (!target) return;
  const text = $("feedback-text").value.trim();
  const fields = {verdict, seq: target.seq};
  if (verdict === "wrong" && $("feedback-silent").checked) {
    fields.correction = {action: "silent"};
  } else if (text) {
    fields.correction = {action: "speak", text};
  } else if (verdict === "missing") {
    showCommandStatus("feedback: type what it should have said here", true);
    $("feedback-text").focus();
    return;
  }
  if (verdict === "late") {
    const at = Number($("feedback-at").value);
    if ($("feedback-at").value === "" || !isFinite(at) || at < 0 || at >= Number(target.t)) {
      showCommandStatus(`feedback: give the second it belonged at, before ${Number(target.t).toFixed(1)} s`, true);
      $("feedback-at").focus();
      return;
    }
    fields.at_t = at;
  }
  sendCommand("feedback", fields, closeFeedback);
}

function addFeedback(event) {
  const c = event.correction;
  let fix = "";
  if (c && c.action === "silent") fix = " → stay silent";
  else if (c && c.text) fix = ` → “${c.text}”`;
  else if (c && c.question) fix = ` → delegate “${c.question}”`;
  const at = typeof event.at_t === "number" ? ` at ${Number(event.at_t).toFixed(1)} s` : "";
  const on = typeof event.target_seq === "number" ? ` on #${event.target_seq}` : "";
  addLine("feedback-line", `Feedback: ${orDash(event.verdict)}${on}${at}${fix}`, event.t);
  if (typeof event.target_seq === "number") {
    const cell = document.querySelector(`#timeline .tick[data-seq="${event.target_seq}"]`);
    if (cell) cell.classList.add("has-feedback");
  }
}

function bindFeedback() {
  $("feedback-form").addEventListener("submit", (ev) => ev.preventDefault());
  for (const button of document.querySelectorAll("#feedback-form [data-verdict]")) {
    button.addEventListener("click", () => sendFeedback(button.dataset.verdict));
  }
  $("feedback-cancel").addEventListener("click", closeFeedback);
  $("feedback-silent").addEventListener("change", (ev) => {
    $("feedback-text").disabled = ev.target.checked;
  });
}

// ---- delegations -----------------------------------------------------------------------------

function delegationCard(taskId) {
  let card = state.cards.get(taskId);
  if (card) return card;
  const box = $("delegations");
  const empty = box.querySelector(".empty");
  if (empty) empty.remove();
  card = el("article", "card");
  card.dataset.taskId = taskId;
  const head = el("header", "card-head");
  head.appendChild(el("span", "badge state-queued", "queued"));
  head.appendChild(el("code", "task-id", taskId));
  head.appendChild(el("time", "when"));
  card.appendChild(head);
  card.appendChild(el("h3", "question"));
  card.appendChild(el("p", "note"));
  card.appendChild(el("p", "target"));
  card.appendChild(el("progress", "bar"));
  card.appendChild(el("ul", "progress-list"));
  card.appendChild(el("div", "result"));
  card.appendChild(el("div", "artifacts"));
  card.appendChild(el("p", "error-text error"));
  for (const name of ["note", "target", "bar", "result", "artifacts", "error"]) {
    card.querySelector(`.${name}`).hidden = true;
  }
  state.cards.set(taskId, card);
  box.prepend(card);
  return card;
}

function setOptionalText(node, text) {
  node.hidden = !text;
  node.textContent = text || "";
}

function updateDelegation(event) {
  const card = delegationCard(event.task_id);
  const badgeState = DELEGATION_STATES.includes(event.state) ? event.state : "queued";
  const badge = card.querySelector(".badge");
  badge.className = `badge state-${badgeState}`;
  badge.textContent = String(event.state).replace("_", " ");
  card.dataset.state = badgeState;
  card.querySelector(".card-head .when").textContent = formatTime(event.t);
  if (event.question) card.querySelector(".question").textContent = event.question;
  if (event.note) setOptionalText(card.querySelector(".note"), `Note: ${event.note}`);
  if (event.target) setOptionalText(card.querySelector(".target"), `Target: ${event.target}`);
  if (badgeState !== "running") card.querySelector(".bar").hidden = true;
  if (event.result) showResult(card.querySelector(".result"), event.result);
  setOptionalText(card.querySelector(".error"), event.error ? `Error: ${event.error}` : "");
  if (badgeState === "done" && !card.dataset.artifacts) {
    card.dataset.artifacts = "loading";
    loadArtifacts(card, event.task_id);
  }
}

// Images are shown; HTML pages open in an iframe that may run nothing (the server also sends
// them with a sandbox policy); anything else is a download link.
async function loadArtifacts(card, taskId) {
  let items = [];
  try {
    const response = await fetch(`/ui/delegations/${encodeURIComponent(taskId)}/artifacts`);
    if (response.ok) items = (await response.json()).artifacts || [];
  } catch (err) {
    return;
  }
  card.dataset.artifacts = String(items.length);
  const box = card.querySelector(".artifacts");
  if (!box || !items.length) return;
  box.hidden = false;
  for (const item of items) {
    const url = String(item.url || "");
    if (!url.startsWith("/ui/delegations/")) continue;
    const mime = String(item.mime || "");
    let node;
    if (mime.startsWith("image/")) {
      node = document.createElement("img");
      node.className = "artifact-image";
      node.alt = String(item.name || "artifact");
      node.src = url;
    } else if (mime === "text/html") {
      node = document.createElement("iframe");
      node.setAttribute("sandbox", "");
      node.setAttribute("referrerpolicy", "no-referrer");
      node.className = "artifact-frame";
      node.title = String(item.name || "artifact");
      node.src = url;
    } else {
      node = document.createElement("a");
      node.className = "artifact-link";
      node.href = url;
      node.textContent = String(item.name || "artifact");
      node.setAttribute("download", "");
    }
    box.appendChild(node);
  }
}

function looksLikeHtml(text) {
  const trimmed = text.trim();
  return trimmed.startsWith("<") && trimmed.includes("</");
}

// A result is text, or an HTML document shown in an iframe that may run nothing.
function showResult(box, result) {
  const text = String(result);
  box.hidden = false;
  if (looksLikeHtml(text)) {
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", ""); // no scripts, no same-origin, no forms, no popups
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.title = "Delegation result";
    frame.className = "result-frame";
    frame.srcdoc = text;
    box.replaceChildren(frame);
  } else {
    box.replaceChildren(el("p", "result-text", text));
  }
}

function addDelegationProgress(event) {
  const card = delegationCard(event.task_id);
  const list = card.querySelector(".progress-list");
  let text = String(event.message);
  if (typeof event.progress === "number") {
    text += typeof event.total === "number" ? ` (${event.progress}/${event.total})` : ` (${event.progress})`;
    const bar = card.querySelector(".bar");
    if (typeof event.total === "number" && event.total > 0) {
      bar.max = event.total;
      bar.value = Math.min(event.progress, event.total);
      bar.hidden = false;
    }
  }
  const item = el("li", null);
  item.appendChild(el("time", "when", formatTime(event.t)));
  item.appendChild(el("span", "text", text));
  list.appendChild(item);
}

// ---- memory ----------------------------------------------------------------------------------

async function searchMemory(query) {
  const results = $("memory-results");
  results.replaceChildren(el("li", "empty", "Searching…"));
  try {
    const response = await fetch(`/ui/recall?q=${encodeURIComponent(query)}&limit=10`,
      {credentials: "same-origin"});
    const body = await readJson(response);
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    showHits(Array.isArray(body.hits) ? body.hits : []);
  } catch (err) {
    results.replaceChildren(el("li", "error-text", `Search failed: ${err.message}`));
  }
}

function showHits(hits) {
  const results = $("memory-results");
  if (!hits.length) {
    results.replaceChildren(el("li", "empty", "No matches."));
    return;
  }
  results.replaceChildren(...hits.map(hitItem));
}

function hitItem(hit) {
  const item = el("li", "hit");
  if (typeof hit.thumb === "string" && hit.thumb.startsWith("/") && !hit.thumb.startsWith("//")) {
    const img = el("img", "thumb");
    img.alt = `Frame at ${formatTime(hit.t)}`;
    img.loading = "lazy";
    img.src = hit.thumb;
    item.appendChild(img);
  }
  const body = el("div", "hit-body");
  const meta = el("div", "meta");
  meta.appendChild(el("time", "when", formatTime(hit.t)));
  meta.appendChild(el("span", "kind", hit.kind));
  if (typeof hit.score === "number") meta.appendChild(el("span", "score", hit.score.toFixed(2)));
  body.appendChild(meta);
  body.appendChild(el("div", "text", hit.text));
  item.appendChild(body);
  return item;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (err) {
    return {};
  }
}

// ---- video -----------------------------------------------------------------------------------

function showServerVideo() {
  stopCamera();
  const img = $("video-server");
  img.hidden = false;
  $("video-placeholder").hidden = true;
  img.src = `/ui/video.mjpg?_=${Date.now()}`;
}

function hideServerVideo() {
  const img = $("video-server");
  img.removeAttribute("src"); // closes the MJPEG stream
  img.hidden = true;
}

// The MJPEG stream ends when the server restarts or the source drops: retry now and then.
function onServerVideoError() {
  if ($("video-mode").value !== "server") return;
  $("video-placeholder").hidden = false;
  $("video-server").hidden = true;
  setTimeout(() => {
    if ($("video-mode").value === "server") showServerVideo();
  }, 3000);
}

async function startCamera() {
  hideServerVideo();
  $("camera-line").hidden = false;
  $("camera-error").textContent = "";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    $("camera-error").textContent = "This browser cannot share a camera here (it needs https or localhost).";
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: true});
    if ($("video-mode").value !== "camera") {
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    state.camera.stream = stream;
    const video = $("camera-video");
    video.srcObject = stream;
    await video.play().catch(() => {});
    $("camera-canvas").hidden = false;
    scheduleCameraFrame(0);
  } catch (err) {
    $("camera-error").textContent = `Camera unavailable: ${err.message || err.name}`;
  }
}

function stopCamera() {
  const cam = state.camera;
  clearTimeout(cam.timer);
  cam.timer = null;
  if (cam.stream) cam.stream.getTracks().forEach((track) => track.stop());
  cam.stream = null;
  $("camera-video").srcObject = null;
  $("camera-canvas").hidden = true;
  $("camera-line").hidden = true;
}

function scheduleCameraFrame(delayMs) {
  clearTimeout(state.camera.timer);
  state.camera.timer = setTimeout(sendCameraFrame, delayMs);
}

// Grab the camera's current picture, show it and send it; one upload at a time.
async function sendCameraFrame() {
  const cam = state.camera;
  if (!cam.stream) return;
  scheduleCameraFrame(intervalSeconds() * 1000);
  const video = $("camera-video");
  if (cam.busy || !video.videoWidth) return;
  const canvas = $("camera-canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
  if (!blob || !cam.stream) return;
  cam.busy = true;
  try {
    await postFrame(blob);
  } finally {
    cam.busy = false;
  }
}

async function postFrame(blob) {
  const errorBox = $("camera-error");
  try {
    const response = await fetch("/ui/frames", {
      method: "POST",
      headers: {"Content-Type": "image/jpeg"},
      body: blob,
      credentials: "same-origin",
    });
    if (response.ok) {
      state.camera.frames += 1;
      $("camera-frames").textContent = String(state.camera.frames);
      errorBox.textContent = "";
      return;
    }
    const body = await readJson(response);
    errorBox.textContent = body.error || `Upload failed: HTTP ${response.status}`;
    if (response.status === 409) {
      // The server reads another source: stop sending but keep the message up.
      clearTimeout(state.camera.timer);
      state.camera.timer = null;
    }
  } catch (err) {
    errorBox.textContent = `Upload failed: ${err.message}`;
  }
}

function onVideoModeChange() {
  if ($("video-mode").value === "camera") startCamera();
  else showServerVideo();
}

// ---- voice: microphone in, speech out (/ui/audio) --------------------------------------------
//
// A second WebSocket carries audio. The server says first what it offers ({type: "hello",
// listening, speaking}); the controls stay hidden otherwise. The microphone goes through an
// AudioWorklet (/ui/mic-worklet.js) that makes 100 ms frames of 16 kHz mono 16-bit PCM, sent as
// binary messages only while push-to-talk is held or hands-free is on (the server enforces the
// same). Speech comes as {type: "play", id, duration_s} then the clip as a binary WAV, played
// in order; {type: "stop"} cuts it (barge-in). Counters for tests are on document.body.dataset:
// audioSentBytes, audioSentFrames, audioReceived, audioPlayed, audioStops.

const MIC_IDLE_MS = 30000; // close the microphone this long after its last use
const PTT_FLUSH_MS = 300;

function audioSocketUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ui/audio`;
}

function connectAudio() {
  const a = state.audio;
  clearTimeout(a.reconnectTimer);
  a.reconnectTimer = null;
  const socket = new WebSocket(audioSocketUrl());
  socket.binaryType = "arraybuffer";
  a.socket = socket;
  socket.addEventListener("open", () => {
    if (socket === a.socket) a.backoffMs = BACKOFF_MIN_MS;
  });
  socket.addEventListener("message", (msg) => {
    if (socket !== a.socket) return;
    if (msg.data instanceof ArrayBuffer) onClipData(msg.data);
    else onAudioMessage(msg.data);
  });
  socket.addEventListener("close", () => {
    if (socket !== a.socket) return;
    a.socket = null;
    releasePtt(false);
    a.pendingClip = null;
    setSendingIndicator();
    if (a.reconnectTimer) return;
    const wait = a.backoffMs;
    a.backoffMs = Math.min(a.backoffMs * 2, BACKOFF_MAX_MS);
    a.reconnectTimer = setTimeout(connectAudio, wait);
  });
}

function audioSocketOpen() {
  const socket = state.audio.socket;
  return socket && socket.readyState === WebSocket.OPEN ? socket : null;
}

function sendAudioControl(type, fields) {
  const socket = audioSocketOpen();
  if (socket) socket.send(JSON.stringify(Object.assign({type}, fields)));
}

function onAudioMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (err) {
    return;
  }
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "hello") onAudioHello(msg);
  else if (msg.type === "play") state.audio.pendingClip = msg;
  else if (msg.type === "stop") stopPlayback();
  else if (msg.type === "error") setVoiceError(orDash(msg.error));
}

function onAudioHello(msg) {
  const a = state.audio;
  a.listening = msg.listening === true;
  a.speaking = msg.speaking === true;
  $("voice-panel").hidden = !(a.listening || a.speaking);
  $("mic-controls").hidden = !a.listening;
  $("voice-hint").hidden = !a.listening;
  $("speaker-controls").hidden = !a.speaking;
  setVoiceError("");
  if (a.listening) {
    // tell a (possibly restarted) server what this page has chosen
    sendAudioControl("echo_guard", {on: !$("headphones-check").checked});
    sendAudioControl("hands_free", {on: a.handsFree});
  } else {
    releasePtt(false);
    setHandsFree(false);
    stopMic();
  }
  if (!a.speaking) stopPlayback();
  if (a.speaking) sendAudioControl("speaker", {on: a.speakerOn});
}

function setVoiceError(text) {
  $("voice-error").textContent = text || "";
}

function updateAudioCounters() {
  const a = state.audio;
  const data = document.body.dataset;
  data.audioSentBytes = String(a.sentBytes);
  data.audioSentFrames = String(a.sentFrames);
  data.audioReceived = String(a.received);
  data.audioPlayed = String(a.played);
  data.audioStops = String(a.stops);
}

// One AudioContext for the microphone and the speaker, made (or resumed) on a user gesture:
// browsers keep sound off until the user has interacted with the page.
function audioContext() {
  const a = state.audio;
  if (!a.context) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return null;
    a.context = new Context();
  }
  return a.context;
}

function resumeAudio() {
  const a = state.audio;
  if (!(a.speakerOn && a.speaking) && !a.mic.node) return;
  const context = audioContext();
  if (context && context.state === "suspended") context.resume().catch(() => {});
  $("speaker-note").textContent = "";
}

// ---- the microphone

function micErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Microphone access was denied: allow it for this site in the browser's settings, "
      + "then try again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return "No microphone found.";
  if (name === "NotReadableError") {
    return "The microphone cannot be read (another program may be using it).";
  }
  return `Microphone unavailable: ${(err && (err.message || err.name)) || "unknown error"}`;
}

// Open the microphone once (concurrent callers share the attempt); true when it runs.
function ensureMic() {
  const mic = state.audio.mic;
  clearTimeout(mic.idleTimer);
  if (mic.node) return Promise.resolve(true);
  if (!mic.starting) mic.starting = startMic().finally(() => { mic.starting = null; });
  return mic.starting;
}

async function startMic() {
  const a = state.audio;
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setVoiceError("The microphone needs a secure page: open it over https, or as "
      + "http://localhost or http://127.0.0.1.");
    return false;
  }
  const context = audioContext();
  if (!context || !context.audioWorklet) {
    setVoiceError("This browser cannot process microphone audio (no AudioWorklet).");
    return false;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(
      {audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true}});
  } catch (err) {
    setVoiceError(micErrorText(err));
    return false;
  }
  try {
    if (!a.workletLoaded) {
      await context.audioWorklet.addModule("/ui/mic-worklet.js");
      a.workletLoaded = true;
    }
    if (context.state === "suspended") await context.resume();
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "mic-capture", {
      numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
    });
    const sink = context.createGain(); // keeps the node pulled; nothing is heard
    sink.gain.value = 0;
    node.port.onmessage = (ev) => onMicFrame(ev.data);
    source.connect(node);
    node.connect(sink);
    sink.connect(context.destination);
    for (const track of stream.getAudioTracks()) {
      track.addEventListener("ended", () => {
        stopMic();
        setHandsFree(false);
        setVoiceError("The microphone stopped (unplugged or turned off).");
      });
    }
    Object.assign(a.mic, {stream, source, node, sink});
    $("mic-level").hidden = false;
    setVoiceError("");
    return true;
  } catch (err) {
    stream.getTracks().forEach((track) => track.stop());
    setVoiceError(`Microphone unavailable: ${err.message || err.name}`);
    return false;
  }
}

function stopMic() {
  const mic = state.audio.mic;
  clearTimeout(mic.idleTimer);
  mic.idleTimer = null;
  if (mic.node) {
    mic.node.port.onmessage = null;
    mic.source.disconnect();
    mic.node.disconnect();
    mic.sink.disconnect();
  }
  if (mic.stream) mic.stream.getTracks().forEach((track) => track.stop());
  Object.assign(mic, {stream: null, source: null, node: null, sink: null});
  $("mic-level").hidden = true;
  $("mic-level").value = 0;
  setSendingIndicator();
}

// Close the microphone a while after its last use (the browser shows it as recording).
function micIdleLater() {
  const a = state.audio;
  clearTimeout(a.mic.idleTimer);
  a.mic.idleTimer = setTimeout(() => {
    if (!a.handsFree && !a.ptt && !a.pttReleasing) stopMic();
  }, MIC_IDLE_MS);
}

function micSending() {
  const a = state.audio;
  return a.listening && (a.handsFree || a.ptt || a.pttReleasing);
}

function setSendingIndicator() {
  const sending = micSending() && !!state.audio.mic.node && !!audioSocketOpen();
  $("voice-indicator").hidden = !sending;
  $("voice-panel").classList.toggle("is-sending", sending);
}

function onMicFrame(msg) {
  if (!msg || msg.type !== "frame") return;
  const a = state.audio;
  $("mic-level").value = Math.min(1, (Number(msg.level) || 0) * 4);
  const socket = audioSocketOpen();
  if (socket && micSending() && msg.pcm && msg.pcm.byteLength) {
    socket.send(msg.pcm.buffer);
    a.sentBytes += msg.pcm.byteLength;
    a.sentFrames += 1;
    updateAudioCounters();
  }
  if (msg.flushed && a.pttReleasing) finishPttRelease();
}

// ---- push-to-talk and hands-free

async function pttDown() {
  const a = state.audio;
  if (!a.listening || a.ptt) return;
  if (a.pttReleasing) finishPttRelease();
  a.ptt = true;
  $("ptt-button").setAttribute("aria-pressed", "true");
  stopPlayback(); // barge-in here at once; the server stops the speech queue too
  sendAudioControl("ptt", {down: true});
  setSendingIndicator();
  if (!(await ensureMic())) releasePtt(true);
  setSendingIndicator();
}

function pttUp() {
  const a = state.audio;
  if (!a.ptt) return;
  a.ptt = false;
  $("ptt-button").setAttribute("aria-pressed", "false");
  if (a.mic.node && audioSocketOpen()) {
    // send what the worklet still holds before saying the utterance is over
    a.pttReleasing = true;
    a.releaseTimer = setTimeout(finishPttRelease, PTT_FLUSH_MS);
    a.mic.node.port.postMessage({type: "flush"});
  } else {
    finishPttRelease();
  }
}

function finishPttRelease() {
  const a = state.audio;
  clearTimeout(a.releaseTimer);
  a.releaseTimer = null;
  a.pttReleasing = false;
  sendAudioControl("ptt", {down: false});
  setSendingIndicator();
  if (!a.handsFree) micIdleLater();
}

// Let go of push-to-talk without waiting (the socket closed, or the microphone failed).
function releasePtt(tellServer) {
  const a = state.audio;
  const held = a.ptt || a.pttReleasing;
  clearTimeout(a.releaseTimer);
  a.releaseTimer = null;
  a.ptt = false;
  a.pttReleasing = false;
  $("ptt-button").setAttribute("aria-pressed", "false");
  if (held && tellServer) sendAudioControl("ptt", {down: false});
}

function setHandsFree(on) {
  const a = state.audio;
  a.handsFree = on;
  $("hands-free-button").setAttribute("aria-pressed", on ? "true" : "false");
  setSendingIndicator();
}

async function toggleHandsFree() {
  const a = state.audio;
  const on = !a.handsFree;
  setHandsFree(on);
  sendAudioControl("hands_free", {on});
  if (!on) {
    micIdleLater();
    return;
  }
  if (!(await ensureMic()) && a.handsFree) {
    setHandsFree(false);
    sendAudioControl("hands_free", {on: false});
  }
  setSendingIndicator();
}

function isTextField(node) {
  if (!node) return false;
  if (node.isContentEditable) return true;
  return ["INPUT", "TEXTAREA", "SELECT"].includes(node.tagName);
}

function isSpace(ev) {
  return ev.code === "Space" || ev.key === " ";
}

function onKeyDown(ev) {
  if (!isSpace(ev) || !state.audio.listening || isTextField(document.activeElement)) return;
  ev.preventDefault(); // no page scroll, no button click
  if (!ev.repeat) pttDown();
}

function onKeyUp(ev) {
  if (!isSpace(ev) || !state.audio.ptt) return;
  ev.preventDefault();
  pttUp();
}

// ---- the speaker

function toggleSpeaker() {
  const a = state.audio;
  a.speakerOn = !a.speakerOn;
  $("speaker-button").setAttribute("aria-pressed", a.speakerOn ? "true" : "false");
  if (a.speakerOn) resumeAudio();
  else stopPlayback();
  sendAudioControl("speaker", {on: a.speakerOn});
}

function onClipData(buffer) {
  const a = state.audio;
  const header = a.pendingClip;
  a.pendingClip = null;
  if (!header) return;
  a.received += 1;
  updateAudioCounters();
  const context = a.speakerOn ? audioContext() : null;
  if (!context) return;
  const generation = a.generation;
  const entry = {id: header.id, buffer: null, failed: false};
  a.clips.push(entry);
  context.decodeAudioData(buffer).then((decoded) => {
    entry.buffer = decoded;
  }, () => {
    entry.failed = true;
  }).finally(() => {
    if (generation === a.generation) playNext();
  });
}

// Play the oldest clip once it is decoded; clips play one after another, in order.
function playNext() {
  const a = state.audio;
  while (!a.current && a.clips.length) {
    const head = a.clips[0];
    if (!head.buffer && !head.failed) return; // still decoding
    a.clips.shift();
    if (head.failed) continue;
    const context = a.context;
    if (context.state !== "running") {
      context.resume().catch(() => {});
      $("speaker-note").textContent = "Click anywhere in the page to hear the assistant.";
      continue; // the moment has passed: skip it rather than play it late
    }
    const node = context.createBufferSource();
    node.buffer = head.buffer;
    node.connect(context.destination);
    node.addEventListener("ended", () => {
      if (a.current !== node) return;
      a.current = null;
      playNext();
    });
    a.current = node;
    node.start();
    a.played += 1;
    updateAudioCounters();
  }
}

// Barge-in: cut the clip playing now and drop the queued ones (and those still decoding).
function stopPlayback() {
  const a = state.audio;
  const node = a.current;
  if (!node && !a.clips.length) return;
  a.generation += 1;
  a.clips = [];
  a.current = null;
  if (node) {
    try {
      node.stop();
    } catch (err) {
      // already stopped
    }
  }
  a.stops += 1;
  updateAudioCounters();
}

function bindVoice() {
  const ptt = $("ptt-button");
  ptt.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    pttDown();
  });
  for (const name of ["pointerup", "pointerleave", "pointercancel"]) {
    ptt.addEventListener(name, pttUp);
  }
  ptt.addEventListener("contextmenu", (ev) => ev.preventDefault()); // long press on touch
  $("hands-free-button").addEventListener("click", toggleHandsFree);
  $("headphones-check").addEventListener("change", (ev) => {
    sendAudioControl("echo_guard", {on: !ev.target.checked});
  });
  $("speaker-button").addEventListener("click", toggleSpeaker);
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", pttUp); // the key or button may be let go elsewhere
  // sound may start only after a user gesture: resume the context on the first one
  document.addEventListener("pointerdown", resumeAudio, true);
  document.addEventListener("keydown", resumeAudio, true);
  updateAudioCounters();
}

// ---- controls --------------------------------------------------------------------------------

function bindForm(formId, handler) {
  $(formId).addEventListener("submit", (ev) => {
    ev.preventDefault();
    handler();
  });
}

function submitText(inputId, op) {
  const input = $(inputId);
  const text = input.value.trim();
  if (!text) return;
  sendCommand(op, {text}, () => { input.value = ""; });
}

function applyInterval() {
  const seconds = Number($("interval-input").value);
  if (!isFinite(seconds) || seconds < 0.1 || seconds > 60) {
    showCommandStatus("interval: use 0.1-60 seconds", true);
    return;
  }
  sendCommand("interval", {seconds}, () => {
    if (state.status) state.status.interval_s = seconds;
  });
}

function togglePause() {
  const op = $("pause-button").dataset.op === "resume" ? "resume" : "pause";
  sendCommand(op, null, () => {
    const next = op === "pause" ? "paused" : "running";
    if (state.status) state.status.state = next;
    setText("status-state", next);
    syncPauseButton(next);
  });
}

function bindControls() {
  bindForm("ask-form", () => submitText("ask-input", "ask"));
  bindForm("task-form", () => submitText("task-input", "task"));
  bindForm("memory-form", () => {
    const query = $("memory-input").value.trim();
    if (query) searchMemory(query);
  });
  $("clear-task-button").addEventListener("click", () => sendCommand("clear_task"));
  $("interval-button").addEventListener("click", applyInterval);
  $("interval-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") applyInterval();
  });
  $("persona-select").addEventListener("change", (ev) => {
    sendCommand("persona", {persona: ev.target.value});
  });
  $("pause-button").addEventListener("click", togglePause);
  $("reset-button").addEventListener("click", () => sendCommand("reset"));
  $("video-mode").addEventListener("change", onVideoModeChange);
  $("video-server").addEventListener("error", onServerVideoError);
  bindFeedback();
  bindVoice();
}

function main() {
  bindControls();
  syncPauseButton("starting");
  $("video-mode").value = "server";
  showServerVideo();
  connect();
  connectAudio();
}

document.addEventListener("DOMContentLoaded", main);
