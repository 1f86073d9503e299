// callwatch agent panel: live transcript, suggestions, alerts and caller mood for one agent.
//
// Plain ES module, no framework, no build step. Everything that comes from the server (event
// text, titles, scripts, KB snippets) is put on the page with textContent, never innerHTML.
//
// Flow: credentials from ?agent=&token= (token then removed from the address bar and kept in
// sessionStorage) or the sign-in form -> GET /v1/agents/{id}/session -> WebSocket
// /v1/agents/{id}/events (first frame: {"type":"auth","token":...}) -> backlog + live events,
// de-duplicated by (call_id, seq) so reconnects never repeat a line.

const MAX_EXPANDED = 4; // suggestion cards shown in full; older ones collapse to their title
const MAX_ALERTS = 5; // alerts kept in the strip per call
const MAX_ENDED_CALLS = 2; // ended calls kept in the tabs for wrap-up (live ones always stay)
const BACKOFF_MIN_S = 0.5;
const BACKOFF_MAX_S = 10;
const INTERACTING_MS = 8000; // after a key press or click, a new call does not steal the view
const STABLE_OPEN_MS = 5000; // a socket open this long resets the reconnect backoff

const $ = (id) => document.getElementById(id);
const EMPTY_TRANSCRIPT = $("transcript-empty");
const STORE = window.sessionStorage;
const K_AGENT = "callwatch.agent";
const K_TOKEN = "callwatch.token";
const K_DISMISSED = "callwatch.dismissed";

// -- small DOM helpers -------------------------------------------------------------------------

// Text from calls can be Chinese (Mandarin calls: simplified characters from the ASR, rule and
// playbook text in Chinese). Such text is tagged lang="zh-Hans" so the browser (and a screen
// reader) picks Simplified Chinese glyphs and voice, and agent.css gives it its font stack and
// line-breaking rules. Japanese and Korean are told apart by their kana and hangul.
const HAN = /\p{Script=Han}/u;
const KANA = /[\p{Script=Hiragana}\p{Script=Katakana}]/u;
const HANGUL = /\p{Script=Hangul}/u;

/** The BCP 47 tag for a piece of text that needs one ("zh-Hans", "ja", "ko"), else null. */
function langOf(text) {
  const s = String(text ?? "");
  if (KANA.test(s)) return "ja";
  if (HANGUL.test(s)) return "ko";
  if (HAN.test(s)) return "zh-Hans";
  return null;
}

/** Set a node's text and its lang to match (an earlier lang goes when the text no longer needs one). */
function setText(node, text) {
  const s = String(text ?? "");
  node.textContent = s;
  const lang = langOf(s);
  if (lang) node.lang = lang;
  else node.removeAttribute("lang");
  return node;
}

/** A run of text: a plain text node, or a span carrying the lang its script needs. */
function textRun(text) {
  const s = String(text);
  const lang = langOf(s);
  return lang ? el("span", { lang, text: s }) : document.createTextNode(s);
}

/** el("p", {class: "x", text: "hello", onclick: fn}, child, ...) */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") {
      node.textContent = String(v);
      const lang = attrs.lang ? null : langOf(v);
      if (lang) node.lang = lang;
    } else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : textRun(c));
  }
  return node;
}

// Line icons drawn as inline SVG (shapes after Feather, MIT): no emoji or icon font needed.
const ICONS = {
  up: [["path", { d: "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3" }]],
  down: [["path", { d: "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17" }]],
  x: [["path", { d: "M18 6 6 18M6 6l12 12" }]],
  copy: [["rect", { x: 9, y: 9, width: 13, height: 13, rx: 2 }], ["path", { d: "M5 15H4a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1" }]],
  critical: [["path", { d: "M7.86 2h8.28L22 7.86v8.28L16.14 22H7.86L2 16.14V7.86z" }], ["path", { d: "M12 8v4M12 16h.01" }]],
  warning: [["path", { d: "M10.29 3.86 1.82 18a2 2 0 0 0 1.71 3h16.94a2 2 0 0 0 1.71-3L13.71 3.86a2 2 0 0 0-3.42 0z" }], ["path", { d: "M12 9v4M12 17h.01" }]],
  info: [["circle", { cx: 12, cy: 12, r: 10 }], ["path", { d: "M12 16v-4M12 8h.01" }]],
  retry: [["path", { d: "M23 4v6h-6" }], ["path", { d: "M20.49 15a9 9 0 1 1-2.12-9.36L23 10" }]],
  check: [["path", { d: "M20 6 9 17l-5-5" }]],
};

function icon(name, cls = "icon") {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  for (const [k, v] of Object.entries({ viewBox: "0 0 24 24", class: cls, "aria-hidden": "true", focusable: "false" })) {
    svg.setAttribute(k, v);
  }
  for (const [tag, attrs] of ICONS[name] || []) {
    const shape = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) shape.setAttribute(k, String(v));
    svg.append(shape);
  }
  return svg;
}

function fmtClock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

function speakerName(speaker) {
  if (speaker === "agent") return "You";
  if (speaker === "customer") return "Customer";
  if (speaker === "mixed") return "Caller line";
  const m = /^speaker[_ -]?(\d+)$/i.exec(speaker || "");
  if (m) return `Speaker ${m[1]}`;
  return speaker ? String(speaker) : "Unknown";
}

function speakerClass(speaker) {
  if (speaker === "agent") return "agent";
  if (speaker === "customer") return "customer";
  return "other";
}

function humanize(name) {
  return String(name || "")
    .replace(/[_-]+/g, " ")
    .replace(/^\w/, (c) => c.toUpperCase());
}

function messageOf(body, fallback) {
  if (!body) return fallback;
  const d = body.detail ?? body.message ?? body.error;
  if (typeof d === "string" && d) return d;
  if (d && typeof d.message === "string") return d.message;
  return fallback;
}

function safeUrl(url) {
  try {
    const u = new URL(String(url), location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

// -- announcements and toasts --------------------------------------------------------------------

/** Say something to screen readers; `text` is a string or a list of runs (each run from a
 * call, such as a Chinese title, is read in its own language). */
function announce(text, assertive = false) {
  const region = $(assertive ? "announce-assertive" : "announce-polite");
  const item = el("p", {}, ...(Array.isArray(text) ? text : [text]));
  region.append(item);
  while (region.childElementCount > 5) region.firstElementChild.remove();
}

let toastTimer = 0;
function toast(text, kind = "info") {
  const t = $("toast");
  setText(t, text);
  t.dataset.kind = kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

// -- state ---------------------------------------------------------------------------------------

const state = {
  agent: "",
  token: "",
  auth: null, // server says whether tokens are checked (from /session)
  calls: new Map(), // call_id -> CallView
  activeId: null,
  socket: null,
  conn: "idle", // idle | connecting | live | reconnecting | offline | signed-out
  connLog: [], // every state the connection went through (for tests and debugging)
  attempt: 0,
  reconnectTimer: 0,
  reconnectAt: 0,
  reconnects: 0,
  openedAt: 0,
  lastInteraction: -Infinity,
  lastCardId: null,
  dismissed: loadDismissed(),
};

function loadDismissed() {
  try {
    return JSON.parse(STORE.getItem(K_DISMISSED) || "{}") || {};
  } catch {
    return {};
  }
}

function rememberDismissed(callId, suggestionId) {
  const list = (state.dismissed[callId] ||= []);
  if (!list.includes(suggestionId)) list.push(suggestionId);
  const keys = Object.keys(state.dismissed);
  for (const k of keys.slice(0, Math.max(0, keys.length - 20))) delete state.dismissed[k];
  try {
    STORE.setItem(K_DISMISSED, JSON.stringify(state.dismissed));
  } catch {
    /* storage full or disabled: dismissals just don't survive a reload */
  }
}

// -- one call ------------------------------------------------------------------------------------

class CallView {
  constructor(callId) {
    this.id = callId;
    this.seqs = new Set();
    this.started = null; // call.started event
    this.startedAt = 0; // ms since epoch, for "newest call"
    this.lastT = 0; // audio seconds of the latest event
    this.lastTAt = performance.now();
    this.ended = false;
    this.endReason = "";
    this.endT = 0;
    this.score = null;
    this.mood = null; // latest emotion of the caller
    this.unseen = false;
    // transcript
    this.lines = []; // {t, seq, el, partial, speaker, t_end}
    this.partials = new Map(); // speaker -> line entry
    this.finalEnd = new Map(); // speaker -> latest final t_end
    this.transcriptEl = el("div", { class: "lines" });
    // suggestions
    this.cards = new Map(); // suggestion_id -> {ev, el, expanded, verdict}
    this.order = []; // suggestion ids, newest first
    this.replaced = new Set();
    this.cardsEl = el("div", { class: "cards" });
    // alerts
    this.alerts = [];
    this.alertsEl = el("ol", { class: "alert-list", "aria-label": "Alerts, newest first" });
  }

  get now() {
    if (this.ended) return this.endT;
    return this.lastT + (performance.now() - this.lastTAt) / 1000;
  }

  shortId() {
    // by characters, not UTF-16 units: an id with emoji or rare Han keeps whole characters
    const chars = Array.from(this.id);
    return chars.length > 22 ? `${chars.slice(0, 8).join("")}…${chars.slice(-8).join("")}` : this.id;
  }
}

function getCall(callId) {
  let call = state.calls.get(callId);
  if (!call) {
    call = new CallView(callId);
    state.calls.set(callId, call);
    pruneCalls();
  }
  return call;
}

function pruneCalls() {
  const ended = [...state.calls.values()]
    .filter((c) => c.ended && c.id !== state.activeId)
    .sort((a, b) => a.startedAt - b.startedAt);
  while (ended.length > MAX_ENDED_CALLS) state.calls.delete(ended.shift().id);
}

// -- events --------------------------------------------------------------------------------------

function ingest(ev) {
  if (!ev || typeof ev !== "object" || typeof ev.call_id !== "string") return false;
  const call = getCall(ev.call_id);
  if (typeof ev.seq === "number") {
    if (call.seqs.has(ev.seq)) return false; // backlog after a reconnect repeats events
    call.seqs.add(ev.seq);
  }
  if (typeof ev.t === "number" && !call.ended) {
    const tEnd = typeof ev.t_end === "number" ? ev.t_end : ev.t;
    const t = Math.max(ev.t, tEnd);
    if (t >= call.lastT) {
      call.lastT = t;
      call.lastTAt = performance.now();
    }
  }
  switch (ev.type) {
    case "call.started":
      onCallStarted(call, ev);
      break;
    case "transcript.partial":
      onPartial(call, ev);
      break;
    case "transcript.final":
      onFinal(call, ev);
      break;
    case "suggestion":
      onSuggestion(call, ev);
      break;
    case "alert":
      onAlert(call, ev);
      break;
    case "emotion":
      onEmotion(call, ev);
      break;
    case "call.ended":
      onEnded(call, ev);
      break;
    case "scorecard":
      if (typeof ev.score === "number") {
        call.score = ev.score;
        addNote(call, ev.t, `QA score ${Math.round(ev.score)}`);
      }
      break;
    case "silence":
      if (typeof ev.duration === "number" && ev.duration >= 5) {
        addNote(call, ev.t, `Silence, ${Math.round(ev.duration)} s`);
      }
      break;
    case "rules.changed":
      addNote(call, ev.t, "QA rules updated");
      break;
    case "call.language":
      if (typeof ev.language === "string") addNote(call, ev.t, `Language: ${ev.language}`);
      break;
    default:
      break;
  }
  if (!state.activeId) selectCall(call.id);
  if (call.id === state.activeId) renderHeader();
  renderTabs();
  return true;
}

function onCallStarted(call, ev) {
  call.started = ev;
  const at = Date.parse(ev.emitted_at || "");
  if (!Number.isNaN(at)) call.startedAt = at;
  else call.startedAt ||= Date.now();
  const current = state.calls.get(state.activeId);
  const newer = !current || current === call || call.startedAt >= current.startedAt;
  if (!current || current.ended || (newer && !isInteracting())) {
    selectCall(call.id);
  } else if (current !== call) {
    call.unseen = true;
    announce(`New call ${call.shortId()} started. Press ] to switch to it.`);
  }
}

function onEnded(call, ev) {
  call.ended = true;
  call.endReason = ev.reason || "";
  call.endT = typeof ev.t === "number" ? ev.t : call.now;
  addNote(call, call.endT, `Call ended${call.endReason ? ` (${humanize(call.endReason).toLowerCase()})` : ""}`);
  // partial lines still open never get their final now
  for (const entry of call.partials.values()) entry.el.classList.add("stale");
  if (call.id === state.activeId) announce("The call has ended.");
  // an ended call gives way to another live one
  if (call.id === state.activeId && !isInteracting()) {
    const live = newestLive();
    if (live) selectCall(live.id);
  }
  pruneCalls();
}

function newestLive() {
  let best = null;
  for (const c of state.calls.values()) {
    if (!c.ended && (!best || c.startedAt > best.startedAt)) best = c;
  }
  return best;
}

// -- transcript ----------------------------------------------------------------------------------

function lineNode(ev, partial) {
  const cls = speakerClass(ev.speaker);
  const node = el(
    "div",
    { class: `line line-${cls}${partial ? " partial" : ""}`, dataset: { speaker: ev.speaker || "" } },
    el(
      "div",
      { class: "line-meta" },
      el("span", { class: "who", text: speakerName(ev.speaker) }),
      el("span", { class: "at", text: fmtClock(ev.t) }),
      partial ? el("span", { class: "typing", text: "speaking…" }) : null,
    ),
    el("p", { class: "say", text: ev.text || "" }),
  );
  return node;
}

function placeLine(call, entry) {
  // keep lines in time order (t, then seq); nearly always an append
  const lines = call.lines;
  let i = lines.length;
  while (i > 0 && (lines[i - 1].t > entry.t || (lines[i - 1].t === entry.t && lines[i - 1].seq > entry.seq))) i--;
  const before = lines[i];
  lines.splice(i, 0, entry);
  const keepBottom = call.id === state.activeId && atBottom();
  call.transcriptEl.insertBefore(entry.el, before ? before.el : null);
  afterTranscriptChange(call, keepBottom);
}

function removeLine(call, entry) {
  const i = call.lines.indexOf(entry);
  if (i >= 0) call.lines.splice(i, 1);
  entry.el.remove();
}

function onPartial(call, ev) {
  const speaker = ev.speaker || "";
  const tEnd = typeof ev.t_end === "number" ? ev.t_end : ev.t;
  const lastFinal = call.finalEnd.get(speaker);
  if (lastFinal !== undefined && tEnd <= lastFinal) return; // older than what was already said
  if (!ev.text || !String(ev.text).trim()) return;
  const existing = call.partials.get(speaker);
  if (existing && existing.t === ev.t) {
    const keepBottom = call.id === state.activeId && atBottom();
    setText(existing.el.querySelector(".say"), ev.text);
    existing.t_end = tEnd;
    existing.seq = ev.seq;
    afterTranscriptChange(call, keepBottom);
    return;
  }
  if (existing) removeLine(call, existing);
  const entry = { t: ev.t, seq: ev.seq, t_end: tEnd, speaker, partial: true, el: lineNode(ev, true) };
  call.partials.set(speaker, entry);
  placeLine(call, entry);
}

function onFinal(call, ev) {
  const speaker = ev.speaker || "";
  const tEnd = typeof ev.t_end === "number" ? ev.t_end : ev.t;
  const partial = call.partials.get(speaker);
  if (partial && (partial.t_end <= tEnd || partial.t === ev.t)) {
    removeLine(call, partial);
    call.partials.delete(speaker);
  }
  call.finalEnd.set(speaker, Math.max(tEnd, call.finalEnd.get(speaker) ?? -1));
  const entry = { t: ev.t, seq: ev.seq, t_end: tEnd, speaker, partial: false, el: lineNode(ev, false) };
  placeLine(call, entry);
}

function addNote(call, t, text) {
  const entry = {
    t: typeof t === "number" ? t : call.now,
    seq: Number.MAX_SAFE_INTEGER,
    partial: false,
    el: el("div", { class: "note" }, el("span", { text: `${fmtClock(t)} · ${text}` })),
  };
  placeLine(call, entry);
}

function atBottom() {
  const box = $("transcript");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function afterTranscriptChange(call, keepBottom) {
  if (call.id !== state.activeId) return;
  $("transcript-empty").hidden = call.lines.length > 0;
  if (keepBottom) scrollToBottom();
  else $("jump").hidden = false;
}

function scrollToBottom() {
  const box = $("transcript");
  box.scrollTop = box.scrollHeight;
  $("jump").hidden = true;
}

// -- suggestions ---------------------------------------------------------------------------------

function onSuggestion(call, ev) {
  const id = String(ev.suggestion_id ?? `seq-${ev.seq}`);
  if (ev.replaces !== undefined && ev.replaces !== null) {
    const old = String(ev.replaces);
    call.replaced.add(old);
    removeCard(call, old, { focusNext: false });
  }
  if (call.replaced.has(id)) return;
  if ((state.dismissed[call.id] || []).includes(id)) return;
  const existing = call.cards.get(id);
  const card = { ev, id, expanded: null, verdict: existing ? existing.verdict : null, el: null };
  card.el = cardNode(call, card);
  if (existing) {
    existing.el.replaceWith(card.el);
    call.cards.set(id, card);
  } else {
    call.cards.set(id, card);
    call.order.unshift(id);
    call.cardsEl.prepend(card.el);
    card.el.classList.add("fresh");
    setTimeout(() => card.el.classList.remove("fresh"), 2500);
    if (call.id === state.activeId) {
      const title = ev.title || humanize(ev.intent) || "New suggestion";
      announce(["New suggestion: ", title], ev.severity === "critical");
    }
  }
  layoutCards(call);
}

function removeCard(call, id, { focusNext = true } = {}) {
  const card = call.cards.get(id);
  if (!card) return;
  const i = call.order.indexOf(id);
  const hadFocus = card.el.contains(document.activeElement);
  call.cards.delete(id);
  if (i >= 0) call.order.splice(i, 1);
  card.el.remove();
  layoutCards(call);
  if (hadFocus && focusNext) {
    const nextId = call.order[Math.min(i, call.order.length - 1)];
    if (nextId) focusCard(call.cards.get(nextId));
    else $("suggestions-pane").focus();
  }
}

function layoutCards(call) {
  call.order.forEach((id, i) => {
    const card = call.cards.get(id);
    const open = card.expanded ?? i < MAX_EXPANDED;
    card.el.classList.toggle("collapsed", !open);
    const btn = card.el.querySelector(".expand-btn");
    btn.setAttribute("aria-expanded", String(open));
    btn.textContent = open ? "Less" : "Show";
    btn.hidden = i < MAX_EXPANDED && card.expanded === null;
  });
  if (call.id === state.activeId) $("suggestions-empty").hidden = call.order.length > 0;
}

function severityOf(ev) {
  return ["info", "warning", "critical"].includes(ev.severity) ? ev.severity : "info";
}

function cardNode(call, card) {
  const ev = card.ev;
  const sev = severityOf(ev);
  const source = ev.source === "rule" ? "rule" : "playbook";
  const titleId = `card-${cssId(call.id)}-${cssId(card.id)}`;
  const title = ev.title || humanize(ev.intent) || humanize(ev.rule_id) || "Suggestion";
  const badgeText =
    source === "rule"
      ? `${sev === "info" ? "Prompt" : humanize(sev)}${ev.rule_id ? ` · ${humanize(ev.rule_id)}` : ""}`
      : `Playbook${ev.intent ? ` · ${humanize(ev.intent)}` : ""}`;

  const node = el("article", {
    class: `card src-${source} sev-${sev}`,
    tabindex: "-1",
    "aria-labelledby": titleId,
    dataset: { id: card.id, intent: ev.intent || "", source },
  });
  node.addEventListener("focusin", () => (state.lastCardId = card.id));

  const expandBtn = el("button", {
    type: "button",
    class: "expand-btn",
    "aria-controls": `${titleId}-body`,
    onclick: () => {
      const open = node.classList.contains("collapsed");
      card.expanded = open;
      layoutCards(call);
    },
  });
  node.append(
    el(
      "header",
      { class: "card-head" },
      el("span", { class: "badge", text: badgeText }),
      el("span", { class: "card-time", text: ev.trigger && typeof ev.trigger.t === "number" ? fmtClock(ev.trigger.t) : fmtClock(ev.t) }),
      expandBtn,
      el("h3", { class: "card-title", id: titleId, text: title }),
    ),
  );

  const body = el("div", { class: "card-body", id: `${titleId}-body` });
  const blocked = Array.isArray(ev.blocked_by) ? ev.blocked_by.filter(Boolean) : [];
  if (blocked.length) {
    body.append(
      el(
        "p",
        { class: "blocked" },
        el("strong", { text: "Do this first: " }),
        blocked.map((b) => humanize(b)).join(", "),
      ),
    );
  }
  const script = Array.isArray(ev.script) ? ev.script.filter((l) => typeof l === "string" && l.trim()) : [];
  if (script.length) {
    const list = el("ol", { class: "script", "aria-label": "Say this (click a line to copy it)" });
    script.forEach((line, i) => {
      const key = i < 9 ? String(i + 1) : null;
      const btn = el(
        "button",
        {
          type: "button",
          class: "script-line",
          title: "Copy this line",
          "aria-keyshortcuts": key,
          dataset: { line: String(i) },
          onclick: () => copyLine(call, card, i),
        },
        el("span", { class: "n", "aria-hidden": "true", text: key || "•" }),
        el("span", { class: "line-text", text: line }),
        icon("copy", "icon copy-icon"),
        el("span", { class: "copied", "aria-hidden": "true", text: "Copied" }),
      );
      btn.setAttribute("aria-label", `Copy line ${i + 1}: ${line}`);
      list.append(el("li", {}, btn));
    });
    body.append(list);
  }
  if (ev.action) {
    body.append(el("p", { class: "action" }, el("span", { class: "action-label", text: "Next step" }), el("span", { text: ev.action })));
  }
  const kb = Array.isArray(ev.kb) ? ev.kb.filter((k) => k && (k.title || k.text)) : [];
  if (kb.length) {
    const details = el("details", { class: "kb" }, el("summary", { text: `Knowledge base (${kb.length})` }));
    for (const k of kb) {
      const href = k.url ? safeUrl(k.url) : null;
      details.append(
        el(
          "div",
          { class: "kb-item" },
          k.title ? el("h4", { text: k.title }) : null,
          k.text ? el("p", { text: k.text }) : null,
          href ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text: "Open article ↗" }) : null,
        ),
      );
    }
    body.append(details);
  }
  const why = [];
  if (ev.reason) why.push([ev.reason]);
  if (typeof ev.score === "number") why.push([`match ${Math.round(ev.score * 100)}%`]);
  if (ev.trigger && ev.trigger.text) why.push(["heard “", String(ev.trigger.text), "”"]);
  if (why.length) {
    const runs = why.flatMap((parts, i) => (i ? [" · ", ...parts] : parts));
    body.append(el("p", { class: "reason" }, el("span", { class: "why", text: "Why " }), ...runs));
  }
  node.append(body);

  const status = el("span", { class: "fb-status", role: "status" });
  const helpful = el("button", {
    type: "button",
    class: "fb fb-helpful",
    "aria-pressed": String(card.verdict === "helpful"),
    "aria-keyshortcuts": "h",
    onclick: () => sendVerdict(call, card, "helpful"),
  }, icon("up"), "Helpful");
  const notHelpful = el("button", {
    type: "button",
    class: "fb fb-not",
    "aria-pressed": String(card.verdict === "not_helpful"),
    "aria-keyshortcuts": "n",
    onclick: () => sendVerdict(call, card, "not_helpful"),
  }, icon("down"), "Not helpful");
  const dismiss = el("button", {
    type: "button",
    class: "fb fb-dismiss",
    "aria-keyshortcuts": "d",
    onclick: () => dismissCard(call, card),
  }, icon("x"), "Dismiss");
  dismiss.setAttribute("aria-label", `Dismiss suggestion: ${title}`);
  node.append(el("footer", { class: "card-foot" }, helpful, notHelpful, status, dismiss));
  return node;
}

/** An id-safe form of any string, one-to-one (so Chinese ids never collide): letters, digits
 * and "-" stay, any other character becomes "_", its code point in hex, "_". */
function cssId(s) {
  return String(s).replace(/[^A-Za-z0-9-]/gu, (c) => `_${c.codePointAt(0).toString(16)}_`);
}

// -- feedback ------------------------------------------------------------------------------------

function authHeaders(extra = {}) {
  return state.token ? { ...extra, Authorization: `Bearer ${state.token}` } : extra;
}

async function postFeedback(call, card, verdict, line) {
  const url = `/v1/calls/${encodeURIComponent(call.id)}/suggestions/${encodeURIComponent(card.id)}/feedback`;
  const body = { agent_id: state.agent, verdict };
  if (typeof line === "number") body.line = line;
  let r;
  try {
    r = await fetch(url, {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new Error("no connection to the server");
  }
  if (!r.ok) {
    const detail = await r.json().catch(() => null);
    throw new Error(messageOf(detail, `server answered ${r.status}`));
  }
  return r.json().catch(() => ({}));
}

async function sendVerdict(call, card, verdict) {
  const node = card.el;
  const status = node.querySelector(".fb-status");
  const helpful = node.querySelector(".fb-helpful");
  const notHelpful = node.querySelector(".fb-not");
  const previous = card.verdict;
  card.verdict = verdict;
  helpful.setAttribute("aria-pressed", String(verdict === "helpful"));
  notHelpful.setAttribute("aria-pressed", String(verdict === "not_helpful"));
  status.className = "fb-status pending";
  status.textContent = "Saving…";
  try {
    await postFeedback(call, card, verdict);
    status.className = "fb-status ok";
    status.replaceChildren(icon("check"), "Feedback recorded");
    node.dataset.verdict = verdict;
  } catch (err) {
    card.verdict = previous;
    helpful.setAttribute("aria-pressed", String(previous === "helpful"));
    notHelpful.setAttribute("aria-pressed", String(previous === "not_helpful"));
    status.className = "fb-status err";
    status.textContent = `Not saved: ${err.message}`;
  }
}

function dismissCard(call, card) {
  rememberDismissed(call.id, card.id);
  removeCard(call, card.id);
  announce(["Dismissed: ", card.ev.title || "suggestion"]);
  postFeedback(call, card, "dismissed").catch((err) => toast(`Dismissal not saved: ${err.message}`, "error"));
}

async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    /* fall back below */
  }
  const focused = document.activeElement;
  const area = el("textarea", { readonly: true, "aria-hidden": "true", class: "clip" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  if (focused && focused.focus) focused.focus({ preventScroll: true });
  return ok;
}

async function copyLine(call, card, index) {
  const lines = card.el.querySelectorAll(".script-line");
  const btn = lines[index];
  if (!btn) return false;
  const text = btn.querySelector(".line-text").textContent;
  const ok = await copyText(text);
  btn.classList.remove("did-copy", "copy-failed");
  void btn.offsetWidth; // restart the feedback animation
  btn.classList.add(ok ? "did-copy" : "copy-failed");
  btn.querySelector(".copied").textContent = ok ? "Copied" : "Copy failed: select it";
  setTimeout(() => btn.classList.remove("did-copy", "copy-failed"), 1800);
  announce(ok ? `Copied line ${index + 1}` : "Copy failed");
  if (ok) postFeedback(call, card, "copied", index).catch(() => {}); // best effort, no noise
  return ok;
}

// -- alerts and mood ---------------------------------------------------------------------------

function onAlert(call, ev) {
  const audience = Array.isArray(ev.audience) ? ev.audience : [ev.audience];
  if (!audience.includes("agent")) return;
  const sev = severityOf(ev);
  const label = { critical: "Critical", warning: "Warning", info: "Info" }[sev];
  const node = el(
    "li",
    { class: `alert sev-${sev} fresh`, dataset: { rule: ev.rule_id || "" } },
    icon(sev, "icon alert-icon"),
    el(
      "div",
      { class: "alert-main" },
      el("p", { class: "alert-msg", text: ev.message || humanize(ev.rule_id) }),
      el(
        "p",
        { class: "alert-meta" },
        el("span", { class: "sev", text: label }),
        ` · ${fmtClock(ev.t)}${ev.rule_id ? ` · ${humanize(ev.rule_id)}` : ""}`,
      ),
    ),
  );
  setTimeout(() => node.classList.remove("fresh"), 4000);
  call.alerts.unshift(ev);
  call.alertsEl.prepend(node);
  while (call.alertsEl.childElementCount > MAX_ALERTS) call.alertsEl.lastElementChild.remove();
  if (call.alerts.length > MAX_ALERTS) call.alerts.length = MAX_ALERTS;
  if (call.id === state.activeId) {
    $("alerts-empty").hidden = true;
    announce([`${label} alert: `, ev.message || ev.rule_id], sev === "critical");
  }
}

function onEmotion(call, ev) {
  // caller mood: the customer, or on a line without roles anyone who is not the agent
  if (ev.speaker === "agent") return;
  if (ev.speaker !== "customer" && call.mood && call.mood.speaker === "customer") return;
  const wasEscalated = call.mood && call.mood.escalated;
  call.mood = ev;
  if (ev.escalated && !wasEscalated && call.id === state.activeId) {
    announce(`Caller is escalating: sounds ${ev.label || "upset"}`, true);
  }
}

function moodLevel(mood) {
  if (!mood) return "none";
  if (mood.escalated) return "escalated";
  const a = Number(mood.anger_index) || 0;
  if (a >= 0.6) return "high";
  if (a >= 0.35) return "elevated";
  return "calm";
}

// -- rendering -------------------------------------------------------------------------------

function selectCall(callId, { focus = false } = {}) {
  const call = state.calls.get(callId);
  if (!call) return;
  state.activeId = callId;
  pruneCalls();
  call.unseen = false;
  $("transcript").replaceChildren(EMPTY_TRANSCRIPT, call.transcriptEl);
  $("suggestions").replaceChildren(call.cardsEl);
  $("alerts").replaceChildren(call.alertsEl);
  $("transcript-empty").hidden = call.lines.length > 0;
  $("suggestions-empty").hidden = call.order.length > 0;
  $("alerts-empty").hidden = call.alertsEl.childElementCount > 0;
  scrollToBottom();
  renderHeader();
  renderTabs();
  if (focus) {
    const tab = document.querySelector(`[role="tab"][data-call="${CSS.escape(callId)}"]`);
    if (tab) tab.focus();
  }
}

function renderHeader() {
  const call = state.calls.get(state.activeId);
  const status = $("call-status");
  if (!call) {
    setText($("call-id"), "No active call");
    $("call-id").title = "";
    $("timer").textContent = "0:00";
    status.dataset.state = "idle";
    status.textContent = "Waiting for a call";
    renderMood(null);
    return;
  }
  setText($("call-id"), call.shortId());
  $("call-id").title = call.id;
  $("timer").textContent = fmtClock(call.now);
  status.dataset.state = call.ended ? "ended" : "live";
  status.textContent = call.ended
    ? `Ended${call.endReason ? ` · ${humanize(call.endReason).toLowerCase()}` : ""}${call.score !== null ? ` · QA ${Math.round(call.score)}` : ""}`
    : "On call";
  renderMood(call.mood);
}

function renderMood(mood) {
  const box = $("mood");
  const level = moodLevel(mood);
  box.dataset.level = level;
  $("mood-flag").hidden = level !== "escalated";
  if (!mood) {
    $("mood-label").textContent = "—";
    $("mood-index").textContent = "";
    $("mood-fill").style.width = "0%";
    box.setAttribute("aria-label", "Caller mood: not read yet");
    return;
  }
  const pct = Math.round(Math.min(1, Math.max(0, Number(mood.anger_index) || 0)) * 100);
  const label = humanize(mood.label || "unknown");
  $("mood-label").textContent = label;
  $("mood-index").textContent = `anger ${pct}%`;
  $("mood-fill").style.width = `${pct}%`;
  box.setAttribute("aria-label", `Caller mood: ${label}, anger index ${pct} percent${mood.escalated ? ", escalated" : ""}`);
}

let tabsKey = "";
function renderTabs() {
  const nav = $("call-tabs");
  const list = $("call-tablist");
  const calls = [...state.calls.values()].sort((a, b) => a.startedAt - b.startedAt);
  nav.hidden = calls.length < 2;
  if (nav.hidden) return;
  // rebuild only when a tab changes (not on every event: a click must not lose its button)
  const key = JSON.stringify(calls.map((c) => [c.id, c.ended, c.unseen, c.id === state.activeId]));
  if (key === tabsKey) return;
  tabsKey = key;
  const tabs = calls.map((c) => {
    const selected = c.id === state.activeId;
    return el(
      "button",
      {
        type: "button",
        role: "tab",
        class: `tab${c.ended ? " ended" : ""}${c.unseen ? " unseen" : ""}`,
        "aria-selected": String(selected),
        tabindex: selected ? "0" : "-1",
        title: c.id,
        dataset: { call: c.id },
        onclick: () => selectCall(c.id),
        onkeydown: (e) => {
          if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
            e.preventDefault();
            switchCall(e.key === "ArrowRight" ? 1 : -1, true);
          }
        },
      },
      el("span", { class: "tab-dot", "aria-hidden": "true" }),
      el("span", { class: "tab-id", text: c.shortId() }),
      el("span", { class: "tab-state", text: c.ended ? "ended" : fmtClock(c.now) }),
      c.unseen ? el("span", { class: "tab-new", text: "new" }) : null,
    );
  });
  const focusedCall = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.call : null;
  list.replaceChildren(...tabs);
  if (focusedCall) {
    const again = list.querySelector(`[data-call="${CSS.escape(focusedCall)}"]`);
    if (again) again.focus();
  }
}

function switchCall(step, focus = false) {
  const calls = [...state.calls.values()].sort((a, b) => a.startedAt - b.startedAt);
  if (calls.length < 2) return;
  const i = calls.findIndex((c) => c.id === state.activeId);
  const next = calls[(i + step + calls.length) % calls.length];
  selectCall(next.id, { focus });
}

function tick() {
  const call = state.calls.get(state.activeId);
  if (call) $("timer").textContent = fmtClock(call.now);
  for (const tab of document.querySelectorAll('#call-tablist [role="tab"]')) {
    const c = state.calls.get(tab.dataset.call);
    const span = tab.querySelector(".tab-state");
    if (c && span) span.textContent = c.ended ? "ended" : fmtClock(c.now);
  }
  if (state.conn === "reconnecting") renderConn();
}

// -- connection ----------------------------------------------------------------------------------

function setConn(conn, text) {
  if (conn !== state.conn) {
    state.connLog.push(conn);
    if (state.connLog.length > 50) state.connLog.shift();
  }
  state.conn = conn;
  renderConn(text);
}

function renderConn(text) {
  const conn = state.conn;
  const labels = {
    idle: "Not connected",
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Server unreachable",
    "signed-out": "Signed out",
  };
  $("conn").dataset.state = conn;
  $("conn-text").textContent = text || labels[conn] || conn;
  const banner = $("banner");
  if (conn === "reconnecting" || conn === "offline") {
    const wait = Math.max(0, Math.ceil((state.reconnectAt - performance.now()) / 1000));
    if (!banner.firstChild) {
      banner.append(
        icon("retry", "icon banner-icon"),
        el("span", { class: "banner-text" }),
        el("button", { type: "button", class: "ghost-btn", text: "Retry now", onclick: retryNow }),
      );
    }
    banner.querySelector(".banner-text").textContent =
      conn === "offline"
        ? `Cannot reach the callwatch server. Retrying${wait ? ` in ${wait} s` : ""}…`
        : `Connection lost — reconnecting…${wait ? ` next try in ${wait} s.` : ""} Anything you missed will be filled in.`;
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.replaceChildren();
  }
}

function retryNow() {
  clearTimeout(state.reconnectTimer);
  state.reconnectAt = performance.now();
  if (state.conn === "offline") verify();
  else connect();
}

function backoffDelay() {
  const base = Math.min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** state.attempt);
  state.attempt += 1;
  const jitter = 0.75 + Math.random() * 0.5; // ±25 %
  return Math.min(BACKOFF_MAX_S, base * jitter) * 1000;
}

function scheduleReconnect(kind, fn) {
  clearTimeout(state.reconnectTimer);
  const delay = backoffDelay();
  state.reconnectAt = performance.now() + delay;
  setConn(kind);
  state.reconnectTimer = setTimeout(fn, delay);
}

function closeSocket() {
  const ws = state.socket;
  state.socket = null;
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, "bye");
    } catch {
      /* already closed */
    }
  }
}

function connect() {
  clearTimeout(state.reconnectTimer);
  closeSocket();
  if (!state.agent) return showLogin();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const url = `${proto}://${location.host}/v1/agents/${encodeURIComponent(state.agent)}/events`;
  if (state.conn !== "reconnecting") setConn("connecting");
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    scheduleReconnect("reconnecting", connect);
    return;
  }
  state.socket = ws;
  ws.onopen = () => {
    state.openedAt = performance.now();
    ws.send(JSON.stringify({ type: "auth", token: state.token || "" }));
    setConn("live");
  };
  ws.onmessage = (msg) => {
    if (typeof msg.data !== "string") return;
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (ev && ev.type === "error") {
      toast(messageOf(ev, "server error"), "error");
      return;
    }
    ingest(ev);
  };
  ws.onclose = (e) => {
    if (state.socket !== ws) return;
    state.socket = null;
    if (e.code === 4401) {
      forgetToken();
      showLogin(
        e.reason
          ? `The server refused your token: ${e.reason}`
          : "The server refused your token. Please sign in again.",
      );
      setConn("signed-out");
      return;
    }
    if (state.openedAt && performance.now() - state.openedAt > STABLE_OPEN_MS) state.attempt = 0;
    state.openedAt = 0;
    state.reconnects += 1;
    scheduleReconnect("reconnecting", connect);
  };
}

async function verify() {
  clearTimeout(state.reconnectTimer);
  if (!state.agent) return showLogin();
  setConn("connecting");
  let r;
  try {
    r = await fetch(`/v1/agents/${encodeURIComponent(state.agent)}/session`, {
      headers: authHeaders(),
      cache: "no-store",
    });
  } catch {
    scheduleReconnect("offline", verify);
    return;
  }
  if (r.status === 401 || r.status === 403) {
    const body = await r.json().catch(() => null);
    forgetToken();
    setConn("signed-out");
    showLogin(`Sign-in refused: ${messageOf(body, "the server did not accept this token")}`);
    return;
  }
  if (r.ok) {
    const body = await r.json().catch(() => ({}));
    state.auth = body.auth ?? null;
    seedCalls(Array.isArray(body.calls) ? body.calls : []);
  } else if (r.status >= 500) {
    scheduleReconnect("offline", verify);
    return;
  }
  // any other answer (an older server without /session): the socket's auth decides
  state.attempt = 0;
  hideLogin();
  setText($("agent-name"), state.agent);
  connect();
}

function seedCalls(summaries) {
  for (const s of summaries) {
    if (!s || typeof s.call_id !== "string" || s.status === "ended") continue;
    const call = getCall(s.call_id);
    if (!call.startedAt && typeof s.started_at === "number") call.startedAt = s.started_at * 1000;
    if (typeof s.duration_s === "number" && s.duration_s > call.lastT) {
      call.lastT = s.duration_s;
      call.lastTAt = performance.now();
    }
    const mood = s.mood && (s.mood.customer || Object.entries(s.mood).find(([k]) => k !== "agent")?.[1]);
    if (mood && !call.mood) call.mood = { speaker: "customer", ...mood };
  }
  const newest = newestLive();
  if (newest && (!state.activeId || !state.calls.has(state.activeId))) selectCall(newest.id);
  renderTabs();
}

// -- sign in -------------------------------------------------------------------------------------

function readCredentials() {
  const params = new URLSearchParams(location.search);
  const agent = params.get("agent");
  const token = params.get("token");
  if (agent !== null && agent.trim()) {
    if (agent.trim() !== STORE.getItem(K_AGENT)) STORE.removeItem(K_TOKEN);
    STORE.setItem(K_AGENT, agent.trim());
  }
  if (token !== null) {
    STORE.setItem(K_TOKEN, token);
    params.delete("token");
    const qs = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${qs ? `?${qs}` : ""}${location.hash}`);
  }
  state.agent = STORE.getItem(K_AGENT) || "";
  state.token = STORE.getItem(K_TOKEN) || "";
}

function forgetToken() {
  state.token = "";
  STORE.removeItem(K_TOKEN);
}

function setBackgroundInert(inert) {
  for (const sel of [".topbar", "#call-tabs", "#banner", "#layout", ".skip"]) {
    const node = document.querySelector(sel);
    if (node) node.inert = inert;
  }
}

function showLogin(message) {
  const overlay = $("login");
  const err = $("login-error");
  err.hidden = !message;
  setText(err, message || "");
  $("login-agent").value = state.agent || "";
  $("login-token").value = "";
  overlay.hidden = false;
  setBackgroundInert(true);
  (state.agent ? $("login-token") : $("login-agent")).focus();
  if (state.conn !== "signed-out") setConn("signed-out");
}

function hideLogin() {
  $("login").hidden = true;
  setBackgroundInert(false);
}

function onLoginSubmit(e) {
  e.preventDefault();
  const agent = $("login-agent").value.trim();
  const token = $("login-token").value.trim();
  if (!agent) {
    $("login-error").hidden = false;
    $("login-error").textContent = "Enter your agent ID.";
    $("login-agent").focus();
    return;
  }
  if (agent !== state.agent) resetCalls();
  state.agent = agent;
  state.token = token;
  STORE.setItem(K_AGENT, agent);
  if (token) STORE.setItem(K_TOKEN, token);
  else STORE.removeItem(K_TOKEN);
  const params = new URLSearchParams(location.search);
  params.set("agent", agent);
  params.delete("token");
  history.replaceState(history.state, "", `${location.pathname}?${params}`);
  $("login-submit").disabled = true;
  verify().finally(() => ($("login-submit").disabled = false));
}

function resetCalls() {
  state.calls.clear();
  state.activeId = null;
  $("transcript").replaceChildren(EMPTY_TRANSCRIPT);
  $("suggestions").replaceChildren();
  $("alerts").replaceChildren();
  EMPTY_TRANSCRIPT.hidden = false;
  $("suggestions-empty").hidden = false;
  $("alerts-empty").hidden = false;
  renderHeader();
  renderTabs();
}

function signOut() {
  clearTimeout(state.reconnectTimer);
  closeSocket();
  forgetToken();
  setConn("signed-out");
  showLogin("");
}

// -- keyboard ------------------------------------------------------------------------------------

function isTyping(target) {
  if (!target || !(target instanceof Element)) return false;
  return Boolean(target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']"));
}

function isInteracting() {
  if (performance.now() - state.lastInteraction < INTERACTING_MS) return true;
  if (!$("help").hidden) return true;
  const a = document.activeElement;
  return Boolean(a && a.closest && a.closest(".card"));
}

function activeCall() {
  return state.calls.get(state.activeId) || null;
}

/** The card holding the keyboard focus, else (for actions) the newest card. */
function focusedCard(fallbackTop = false) {
  const call = activeCall();
  if (!call) return null;
  const a = document.activeElement;
  const node = a && a.closest ? a.closest(".card") : null;
  if (node && call.cards.has(node.dataset.id)) return call.cards.get(node.dataset.id);
  return fallbackTop && call.order.length ? call.cards.get(call.order[0]) : null;
}

function focusCard(card) {
  if (!card) return;
  card.el.focus({ preventScroll: false });
  card.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
  state.lastCardId = card.id;
}

function moveCard(step) {
  const call = activeCall();
  if (!call || !call.order.length) return;
  const a = document.activeElement;
  const current = a && a.closest ? a.closest(".card") : null;
  let i = current ? call.order.indexOf(current.dataset.id) : -1;
  i = i < 0 ? 0 : Math.max(0, Math.min(call.order.length - 1, i + step));
  focusCard(call.cards.get(call.order[i]));
}

function openHelp() {
  const help = $("help");
  if (!help.hidden) return;
  state.helpReturn = document.activeElement;
  help.hidden = false;
  setBackgroundInert(true);
  help.querySelector(".dialog").focus();
}

function closeHelp() {
  const help = $("help");
  if (help.hidden) return;
  help.hidden = true;
  setBackgroundInert(false);
  const back = state.helpReturn;
  if (back && back.isConnected && back.focus) back.focus();
}

function onKeyDown(e) {
  state.lastInteraction = performance.now();
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (!$("login").hidden) return; // the form handles its own keys
  if (e.key === "Escape") {
    if (!$("help").hidden) {
      closeHelp();
      e.preventDefault();
    } else if (document.activeElement && document.activeElement.closest && document.activeElement.closest(".card")) {
      document.activeElement.blur();
      state.lastCardId = null;
      e.preventDefault();
    }
    return;
  }
  if (isTyping(e.target)) return;
  if (!$("help").hidden) {
    if (e.key === "?") {
      closeHelp();
      e.preventDefault();
    }
    return;
  }
  const inTranscript = e.target instanceof Element && e.target.closest("#transcript");
  const key = e.key;
  let handled = true;
  if (key === "?") openHelp();
  else if (key === "j" || (key === "ArrowDown" && !inTranscript && !isTab(e.target))) moveCard(1);
  else if (key === "k" || (key === "ArrowUp" && !inTranscript && !isTab(e.target))) moveCard(-1);
  else if (/^[1-9]$/.test(key)) {
    const card = focusedCard(true);
    const call = activeCall();
    if (card && call) copyLine(call, card, Number(key) - 1);
  } else if (key === "h" || key === "n") {
    const card = focusedCard(true);
    const call = activeCall();
    if (card && call) sendVerdict(call, card, key === "h" ? "helpful" : "not_helpful");
  } else if (key === "d") {
    const card = focusedCard(true);
    const call = activeCall();
    if (card && call) dismissCard(call, card);
  } else if (key === "e") {
    const card = focusedCard(true);
    const details = card && card.el.querySelector("details.kb");
    if (details) details.open = !details.open;
  } else if (key === "]") switchCall(1);
  else if (key === "[") switchCall(-1);
  else if (key === "g") scrollToBottom();
  else handled = false;
  if (handled) e.preventDefault();
}

function isTab(target) {
  return target instanceof Element && target.getAttribute("role") === "tab";
}

// -- wiring --------------------------------------------------------------------------------------

function init() {
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("signout-btn").addEventListener("click", signOut);
  $("help-btn").addEventListener("click", openHelp);
  $("help-close").addEventListener("click", closeHelp);
  $("help").addEventListener("click", (e) => {
    if (e.target === $("help")) closeHelp();
  });
  $("jump").addEventListener("click", scrollToBottom);
  $("transcript").addEventListener("scroll", () => {
    if (atBottom()) $("jump").hidden = true;
  });
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("pointerdown", () => (state.lastInteraction = performance.now()));
  setInterval(tick, 1000);
  renderHeader();
  renderConn();
  readCredentials();
  setText($("agent-name"), state.agent);
  if (!state.agent) showLogin("");
  else verify();
}

// a small handle for the browser tests and for debugging from the console
window.__callwatch = {
  state,
  get socket() {
    return state.socket;
  },
  get connection() {
    return state.conn;
  },
  get reconnects() {
    return state.reconnects;
  },
  ingest,
  reconnect: retryNow,
};

init();
