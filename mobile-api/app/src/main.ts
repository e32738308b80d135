// The responder app: enrolment, the task screen and its buttons, the new-task alert, the
// outbox shown plainly. Everything the crew sees comes from what the gateway confirmed
// (model.ts) and the commands still waiting (link.ts).
import "./style.css";
import * as db from "./db";
import { Link, type LinkState } from "./link";
import { actions, describe, projected, STATUS_WORDS, type Action, type Known } from "./model";
import { isUuid, type Command } from "./protocol";

const root = document.getElementById("app")!;
let link: Link | null = null;
let alarm: number | undefined;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...kids);
  return e;
}

const words = (code: string) => code.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

// ---- Enrolment ----

/** A token as the protocol allows it to be pasted: printable ASCII without spaces. */
function checkToken(raw: string): string | Error {
  const t = raw.trim();
  if (!t) return new Error("Paste the device token dispatch gave you.");
  if (t.length > 2048 || !/^[\x21-\x7e]+$/.test(t)) return new Error("That is not a device token: it has spaces or characters a token does not have.");
  if (!t.startsWith("mt2.")) return new Error("That is not a current device token (they start with mt2.). Ask dispatch for a new one.");
  return t;
}

/** The gateway's address: given (it must be on this page's host), else asked of the server. */
async function gatewayFor(given: string | null): Promise<string | Error> {
  if (given) {
    let u: URL;
    try { u = new URL(given); } catch { return new Error(`The gateway address "${given}" is not an address.`); }
    if (u.protocol !== "ws:" && u.protocol !== "wss:") return new Error("The gateway address must start with ws:// or wss://.");
    if (u.hostname !== location.hostname) return new Error(`The gateway must be on ${location.hostname}, the server this app came from.`);
    return `${u.protocol}//${u.host}`;
  }
  try {
    const r = await fetch("gateway.json", { cache: "no-store" });
    if (r.status === 404) return new Error("This server runs no mobile gateway; dispatch must turn it on.");
    if (!r.ok) return new Error(`The server could not say where its gateway is (HTTP ${r.status}).`);
    const g = (await r.json()) as { port?: unknown; tls?: unknown };
    if (!Number.isInteger(g.port) || (g.port as number) < 1 || (g.port as number) > 65535) return new Error("The server gave a gateway port that is not a port.");
    const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
    return `${g.tls === true ? "wss" : "ws"}://${host}:${g.port}`;
  } catch {
    return new Error("No network: enrolling needs a connection to the server once.");
  }
}

async function enrol(token: string, unit: string | null, gateway: string | null): Promise<string | null> {
  const t = checkToken(token);
  if (t instanceof Error) return t.message;
  if (unit && !isUuid(unit)) return "The unit in the enrolment link is not a unit id.";
  const g = await gatewayFor(gateway);
  if (g instanceof Error) return g.message;
  await db.saveEnrolment({ token: t, gateway: g, ...(unit ? { unit: unit.toLowerCase() } : {}) });
  return null;
}

function enrolScreen(message?: string): void {
  stopAlarm();
  const token = el("textarea", { id: "token", rows: "4", autocomplete: "off", spellcheck: "false", "aria-label": "Device token" });
  const error = el("p", { class: "error", role: "alert", id: "enrol-error" }, message ?? "");
  const button = el("button", { class: "big primary", id: "enrol" }, "Enrol this phone");
  button.onclick = async () => {
    button.disabled = true;
    const problem = await enrol(token.value, null, null);
    button.disabled = false;
    if (problem) error.textContent = problem;
    else void startTaskScreen();
  };
  root.replaceChildren(
    el("h1", {}, "Muster responder"),
    el("p", {}, "Open the enrolment link dispatch sends for your unit, or paste the device token here."),
    el("label", { for: "token" }, "Device token"), token, error, button,
  );
}

// ---- Task screen ----

function stopAlarm(): void {
  clearInterval(alarm);
  alarm = undefined;
  if ("vibrate" in navigator) navigator.vibrate(0);
  document.getElementById("alert")?.remove();
}

function beep(): void {
  try {
    const ctx = new AudioContext();
    if (ctx.state !== "running") { void ctx.close(); return; }
    const o = ctx.createOscillator();
    o.frequency.value = 880;
    o.connect(ctx.destination);
    o.start();
    o.stop(ctx.currentTime + 0.4);
    o.onended = () => void ctx.close();
  } catch { /* no sound where the browser does not allow it */ }
}

function raiseAlert(k: Known): void {
  const t = k.task;
  if (!t || t.acknowledged) return;
  stopAlarm();
  const ack = el("button", { class: "big primary", id: "alert-ack" }, "Acknowledge");
  const view = el("button", { class: "big", id: "alert-view" }, "View task");
  ack.onclick = () => { stopAlarm(); void link?.submit({ type: "acknowledge_task", task: t.task }); };
  view.onclick = stopAlarm;
  const card = el("section", { id: "alert", class: "alert", role: "alertdialog", "aria-label": "New task" },
    el("p", { class: "alert-title" }, "NEW TASK"),
    el("p", { class: "alert-type" }, t.incident_type ? words(t.incident_type) : "Incident"),
    el("p", { class: `prio prio-${t.priority ?? "none"}` }, t.priority ?? "Priority not given"),
    ack, view);
  document.body.append(card);
  const ring = () => { if ("vibrate" in navigator) navigator.vibrate([500, 200, 500, 200, 500]); beep(); };
  ring();
  alarm = window.setInterval(ring, 4000);
}

let lastKnown: Known | null = null;
let lastQueue: readonly Command[] = [];
let sending = false;
let state: LinkState = { kind: "connecting" };
const notices: string[] = [];
let declining = false;

function render(): void {
  const k = lastKnown;
  if (!k) return;
  const view = projected(k, lastQueue);
  const conn = el("p", { id: "connection", class: `conn conn-${state.kind}` },
    state.kind === "online" ? "Connected"
      : state.kind === "connecting" ? "Connecting…"
        : state.kind === "offline" ? (state.retryInS > 0 ? `No signal: trying again in ${state.retryInS} s` : "No signal")
          : state.why);
  const n = lastQueue.length;
  const outbox = el("p", { id: "outbox", class: n ? "outbox waiting" : "outbox" },
    n === 0 ? "Everything is sent."
      : state.kind === "online" ? `Sending ${n} update${n > 1 ? "s" : ""}…`
        : `${n} update${n > 1 ? "s" : ""} waiting for signal`);
  const pending = el("ol", { id: "pending", class: "pending" }, ...lastQueue.map((c) => el("li", {}, `${describe(c)} (not sent yet)`)));
  const status = el("p", { id: "status", class: "status" }, "Status: ",
    el("strong", { id: "status-confirmed" }, k.status ? STATUS_WORDS[k.status] : "not known yet"),
    n && view.status !== k.status && view.status ? ` → ${STATUS_WORDS[view.status]} when sent` : "");
  const shown = el("div", { id: "notices" }, ...notices.map((t, i) => {
    const x = el("button", { class: "dismiss", "aria-label": "Dismiss" }, "×");
    x.onclick = () => { notices.splice(i, 1); render(); };
    return el("p", { class: "notice", role: "alert" }, t, x);
  }));
  if (k.withdrawn && !k.task) shown.append(el("p", { class: "notice" }, "The task you had was withdrawn or reassigned by dispatch."));

  const parts: Node[] = [conn, shown, status, outbox, pending];
  const t = view.task;
  if (t) {
    const rows: Node[] = [
      el("h2", { id: "task-type" }, t.incident_type ? words(t.incident_type) : "Task"),
      el("p", { class: `prio prio-${t.priority ?? "none"}`, id: "task-priority" }, t.priority ?? "Priority not given"),
    ];
    if (t.location) {
      const where = `${t.location.lat.toFixed(5)}, ${t.location.lon.toFixed(5)}`;
      rows.push(el("p", { id: "task-location" }, "Location: ", el("a", { href: `geo:${t.location.lat},${t.location.lon}` }, where)));
    }
    if (t.call_back) rows.push(el("p", {}, "Caller: ", el("a", { id: "call-back", class: "tel", href: `tel:${t.call_back.replace(/[ ()-]/g, "")}` }, t.call_back)));
    rows.push(el("p", { class: "muted" }, `Assigned ${new Date(t.assigned_at).toLocaleTimeString()}${t.acknowledged ? " · acknowledged" : ""}`));
    parts.push(el("section", { class: "task", id: "task" }, ...rows));
  } else {
    parts.push(el("section", { class: "task none", id: "task" }, el("p", {}, "No task.")));
  }

  const buttons = el("div", { class: "actions", id: "actions" });
  for (const a of actions(view)) buttons.append(actionButton(a));
  parts.push(buttons);
  if (declining && t) parts.push(declineForm(t.task));

  const logout = el("button", { class: "logout", id: "logout" }, "Log out of this phone");
  logout.onclick = async () => {
    if (lastQueue.length && !confirm(`${lastQueue.length} updates are not sent yet and will be lost. Log out?`)) return;
    link?.stop();
    link = null;
    stopAlarm();
    await db.forget();
    enrolScreen("Logged out. This phone gets no more alerts.");
  };
  parts.push(logout);
  root.replaceChildren(...parts);
  if (sending) root.dataset.sending = "1"; else delete root.dataset.sending;
}

function actionButton(a: Action): HTMLButtonElement {
  const b = el("button", { class: `big action-${a.id}`, "data-action": a.id }, a.label);
  b.onclick = () => {
    if (a.needsReason) { declining = true; render(); return; }
    stopAlarm();
    void link?.submit(a.body);
  };
  return b;
}

function declineForm(task: string): HTMLElement {
  const reason = el("input", { id: "decline-reason", maxlength: "200", placeholder: "Reason (optional)" });
  const send = el("button", { class: "big danger", id: "decline-send" }, "Decline task");
  const cancel = el("button", { class: "big", id: "decline-cancel" }, "Keep task");
  send.onclick = () => {
    declining = false;
    stopAlarm();
    const r = reason.value.trim();
    void link?.submit({ type: "decline_task", task, ...(r ? { reason: r } : {}) });
  };
  cancel.onclick = () => { declining = false; render(); };
  return el("div", { class: "decline" }, el("label", { for: "decline-reason" }, "Why decline?"), reason, send, cancel);
}

async function startTaskScreen(): Promise<void> {
  const enrolment = await db.loadEnrolment();
  if (!enrolment) { enrolScreen(); return; }
  link?.stop();
  link = new Link(enrolment, {
    changed(known, queue, inFlight) { lastKnown = known; lastQueue = [...queue]; sending = inFlight; render(); },
    state(s) { state = s; render(); if (s.kind === "ended") stopAlarm(); },
    notice(text) { notices.push(text); if (notices.length > 5) notices.shift(); render(); },
    newTask(known) { raiseAlert(known); },
  });
  await link.start();
}

/** An enrolment link carries `#token=…&unit=…&gateway=…` (a fragment: never sent to a server). */
async function fromFragment(): Promise<string | null | undefined> {
  if (!location.hash.includes("token=")) return undefined;
  const p = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  link?.stop();
  link = null;
  return enrol(p.get("token") ?? "", p.get("unit"), p.get("gateway"));
}

async function boot(): Promise<void> {
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(() => {});
  if (!("indexedDB" in window)) {
    root.replaceChildren(el("p", { class: "error" }, "This browser keeps no data for the app (IndexedDB is off, as in a private window); it cannot work here."));
    return;
  }
  const problem = await fromFragment();
  if (problem) { enrolScreen(problem); return; }
  await startTaskScreen();
}

addEventListener("hashchange", () => void boot());
void boot();
