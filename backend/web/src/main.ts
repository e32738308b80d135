import "./style.css";
import { ApiError, call, setToken, token } from "./api";
import type { Answers, Reason } from "./api.gen";
import { openIncidents, renderFigures, renderQueue, renderUnits, svgShape, type ResponseTimes } from "./boards";
import { LiveState, type Connection } from "./feed";
import { WallMap, type CityDoc } from "./map";
import { DISPOSITIONS, INCIDENT_TYPES, PRIORITY_COLOUR, STATUS_STYLE, UNIT_STATUSES, type Incident, type RoadClosure, type Unit } from "./types";
import { clock, esc, hhmmss, label } from "./util";

/** Data older than this (while not connected) is shown as stale. */
const STALE_AFTER_MS = 3000;

const app = document.getElementById("app")!;
app.innerHTML = `
<header>
  <div class="brand">MUSTER <span id="city-name"></span></div>
  <div id="figures" class="figures"></div>
  <div class="clock" id="clock"></div>
  <div class="conn" id="conn" data-state="connecting">connecting…</div>
  <button id="toggle-console" class="btn">Console</button>
</header>
<div id="stale-banner" class="stale-banner" hidden></div>
<div id="history-banner" class="history-banner" hidden></div>
<main>
  <section class="map-wrap"><div id="map"></div><div class="legend" id="legend"></div></section>
  <aside class="side">
    <section class="panel"><h2>Incident queue</h2><div id="queue"></div></section>
    <section class="panel"><h2>Units</h2><div id="units"></div></section>
  </aside>
  <aside class="console" id="console" hidden>
    <section class="panel">
      <h2>New call</h2>
      <form id="new-incident" novalidate>
        <label>Address <span class="row"><input name="address" id="f-address" autocomplete="off" placeholder="Street and number"/><button type="button" class="btn" id="lookup">Look up</button></span></label>
        <div class="err" data-for="address"></div>
        <div class="row">
          <label>Latitude <input name="lat" id="f-lat" inputmode="decimal"/></label>
          <label>Longitude <input name="lon" id="f-lon" inputmode="decimal"/></label>
        </div>
        <div class="hint">or click the map</div>
        <div class="err" data-for="location"></div>
        <div class="row">
          <label>Type <select name="incident_type" id="f-type">${INCIDENT_TYPES.map((t) => `<option value="${t}">${label(t)}</option>`).join("")}</select></label>
          <label>Priority <select name="priority" id="f-priority">${["P1", "P2", "P3", "P4", "P5"].map((p) => `<option ${p === "P2" ? "selected" : ""}>${p}</option>`).join("")}</select></label>
        </div>
        <div class="err" data-for="incident_type"></div><div class="err" data-for="priority"></div>
        <div class="row">
          <label>Caller <input name="caller_name" id="f-caller" autocomplete="off"/></label>
          <label>Call back <input name="call_back" id="f-callback" autocomplete="off"/></label>
        </div>
        <div class="err" data-for="caller"></div>
        <button class="btn primary" type="submit" id="create">Create incident</button>
        <div class="err" data-for="form"></div>
      </form>
    </section>
    <section class="panel" id="selected-panel"><h2>Selected</h2><div id="selected"><div class="empty">Pick an incident or a unit in the lists or on the map.</div></div></section>
  </aside>
</main>
<footer class="timeline">
  <button class="btn" id="tt-live" disabled>● Live</button>
  <button class="btn" id="tt-play">▶ Play</button>
  <select id="tt-speed"><option value="1">1×</option><option value="10">10×</option><option value="60" selected>60×</option><option value="600">600×</option></select>
  <input type="range" id="tt-range" min="0" max="1000" value="1000"/>
  <span id="tt-label">live</span>
  <span id="tt-error" class="err"></span>
</footer>
<div id="login" class="login" hidden>
  <form id="login-form"><h2>Token needed</h2><p>Paste an operator or planner token (<code>muster serve --demo</code> prints them).</p>
  <input id="login-token" autocomplete="off"/><button class="btn primary">Use token</button></form>
</div>`;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const live = new LiveState(token);
const wallMap = new WallMap($("map"));
(window as any).muster = { live, map: wallMap };

let selected: { kind: "incident" | "unit"; id: string } | null = null;
/** In history mode: the moment shown and its state; null when live. */
let history: { at: number; incidents: Map<string, Incident>; units: Map<string, Unit> } | null = null;

$("legend").innerHTML =
  UNIT_STATUSES.map((s) => {
    const st = STATUS_STYLE[s];
    return `<span><svg width="18" height="18" viewBox="-10 -10 20 20">${svgShape(st.shape, st.colour)}</svg>${st.label}</span>`;
  }).join("") +
  ` <span class="sep"></span>` +
  (["P1", "P2", "P3", "P4", "P5"] as const).map((p) => `<span><i class="ring" style="border-color:${PRIORITY_COLOUR[p]}">${p}</i></span>`).join("");

function shown() {
  return history ?? { incidents: live.incidents, units: live.units };
}
function nowMs() {
  return history ? history.at : Date.now();
}

// ---------------------------------------------------------------------------------------
// Boards, throttled to a few renders a second.

let boardsDirty = true;
/** Today's response-time percentiles, refreshed every 15 s while live. */
let responseTimes: ResponseTimes | null = null;
async function loadResponseTimes() {
  if (history || live.connection !== "live") return;
  try {
    responseTimes = await call<Answers["get_wall_response_times"]>("GET", "/api/wall/response-times");
  } catch {
    responseTimes = null;
  }
}
window.setInterval(loadResponseTimes, 15000);

/** Road closures in force, refreshed every 5 s while live (none are shown in the past). */
async function loadClosures() {
  if (history) {
    wallMap.setClosures([]);
    document.body.dataset.closures = "0";
    return;
  }
  if (live.connection !== "live") return;
  try {
    const answer = await call<Answers["get_roads_closures"]>("GET", "/api/roads/closures");
    wallMap.setClosures(answer.closures);
    document.body.dataset.closures = String(answer.closures.length);
  } catch {
    // A server without a city has no closures; the map keeps what it showed.
  }
}
window.setInterval(loadClosures, 5000);
let responseTimer: number | undefined;
/** An incident changed: its time points may have too; ask again soon (once for a burst). */
function responseTimesSoon() {
  window.clearTimeout(responseTimer);
  responseTimer = window.setTimeout(loadResponseTimes, 1000);
}
const lastStatus = new Map<string, string>();
const boardMs: number[] = [];
(window as any).muster.boardMs = boardMs;
function renderBoards(part: "all" | "figures" | "queue" | "units" = "all") {
  const t0 = performance.now();
  try {
    renderBoardsNow(part);
  } finally {
    boardMs.push(performance.now() - t0);
    if (boardMs.length > 1000) boardMs.splice(0, 500);
  }
}
function renderBoardsNow(part: "all" | "figures" | "queue" | "units") {
  const s = shown();
  const now = nowMs();
  if (part !== "units") {
    const open = openIncidents(s.incidents.values());
    if (part !== "queue") renderFigures($("figures"), open, s.units, now, history ? null : responseTimes);
    if (part !== "figures") renderQueue($("queue"), open, s.units, now, selected?.id ?? null);
  }
  if (part === "all" || part === "units") renderUnits($("units"), s.units, now, selected?.id ?? null);
  if (part === "all" && selected) renderSelected(false);
  if (part === "all") boardsDirty = false;
}
// The timers tick once a second; the three boards refresh in turn, not in one long frame.
window.setInterval(() => {
  updateStatus();
  renderBoards("figures");
  window.setTimeout(() => renderBoards("queue"), 330);
  window.setTimeout(() => {
    renderBoards("units");
    if (selected) renderSelected(false);
  }, 660);
}, 1000);
let boardsScheduled = false;
function scheduleBoards() {
  boardsDirty = true;
  if (boardsScheduled) return;
  boardsScheduled = true;
  window.setTimeout(() => {
    boardsScheduled = false;
    renderBoards();
  }, 250);
}

let firstRender = { city: false, data: false, marked: false };
/** Marks `muster:first-render` once the base map and the first snapshot are drawn. */
function firstRenderStep(part: "city" | "data") {
  firstRender[part] = true;
  if (firstRender.city && firstRender.data && !firstRender.marked) {
    firstRender.marked = true;
    requestAnimationFrame(() => performance.mark("muster:first-render"));
  }
}

live.listen({
  onChange(kind, row) {
    if (history) return;
    if (kind === "snapshot") {
      wallMap.reset(live.incidents.values(), live.units.values());
      renderBoards();
      firstRenderStep("data");
    }
    else if (kind === "incident") {
      wallMap.putIncident(row as Incident);
      scheduleBoards();
      responseTimesSoon();
    } else {
      wallMap.putUnit(row as Unit);
      // Position reports are many; the boards catch up on the next second's refresh unless
      // the status changed.
      const u = row as Unit;
      if (lastStatus.get(u.id) !== u.status) scheduleBoards();
      lastStatus.set(u.id, u.status);
    }
  },
  onConnection(state: Connection) {
    if (state === "unauthorized") $("login").hidden = false;
    if (state === "live") {
      $("login").hidden = true;
      void loadCity();
      void loadResponseTimes();
      void loadClosures();
    }
    updateStatus();
  },
});

function updateStatus() {
  const c = $("conn");
  const state = live.connection;
  c.dataset.state = state;
  c.textContent = state === "live" ? `live · @${live.position ?? 0}` : state === "connecting" ? "connecting…" : state === "lost" ? "connection lost" : "token refused";
  $("clock").textContent = hhmmss(Date.now());
  const banner = $("stale-banner");
  const age = live.freshAt ? Date.now() - live.freshAt : null;
  const stale = state !== "live" && (age === null || age > STALE_AFTER_MS || state === "unauthorized");
  banner.hidden = !stale;
  document.body.classList.toggle("stale", stale);
  if (stale) {
    banner.textContent =
      age === null
        ? "NO DATA — connecting to the server…"
        : `STALE DATA — last update ${clock(age / 1000)} ago (${hhmmss(live.freshAt)}). ${state === "unauthorized" ? "The token was refused." : "Reconnecting…"}`;
  }
}

let cityLoaded = false;
async function loadCity() {
  if (cityLoaded) return;
  cityLoaded = true;
  try {
    const city = await call<CityDoc>("GET", "/api/wall/city");
    $("city-name").textContent = city.name;
    wallMap.setCity(city);
    document.body.dataset.city = "loaded";
    firstRenderStep("city");
  } catch (e) {
    cityLoaded = false;
    document.body.dataset.city = "failed";
    console.warn("base map", e);
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken($<HTMLInputElement>("login-token").value.trim());
  $("login").hidden = true;
});

// ---------------------------------------------------------------------------------------
// Picking and the console.

function pick(kind: "incident" | "unit", id: string) {
  selected = { kind, id };
  wallMap.select(id);
  $("console").hidden = false;
  document.body.classList.add("with-console");
  renderSelected(true);
  scheduleBoards();
}
wallMap.onPick = pick;
wallMap.onMapClick = (lat, lon) => {
  if ($("console").hidden) return;
  $<HTMLInputElement>("f-lat").value = lat.toFixed(6);
  $<HTMLInputElement>("f-lon").value = lon.toFixed(6);
};
$("queue").addEventListener("click", (ev) => {
  const row = (ev.target as HTMLElement).closest<HTMLElement>("[data-incident]");
  if (row) pick("incident", row.dataset.incident!);
});
$("units").addEventListener("click", (ev) => {
  const row = (ev.target as HTMLElement).closest<HTMLElement>("[data-unit]");
  if (row) pick("unit", row.dataset.unit!);
});
$("toggle-console").addEventListener("click", () => {
  $("console").hidden = !$("console").hidden;
  document.body.classList.toggle("with-console", !$("console").hidden);
  wallMap.map.invalidateSize();
});

function showErrors(form: HTMLElement, e: unknown, fields: string[]) {
  form.querySelectorAll<HTMLElement>(".err").forEach((el) => (el.textContent = ""));
  const err = e instanceof ApiError ? e : new ApiError(0, "client", String(e));
  let field = err.field(fields) ?? "form";
  if (field === "lat" || field === "lon" || field === "latitude" || field === "longitude") field = "location";
  if (field === "name" || field === "call_back") field = "caller";
  const slot = form.querySelector<HTMLElement>(`.err[data-for="${field}"]`) ?? form.querySelector<HTMLElement>(`.err[data-for="form"]`);
  if (slot) slot.textContent = err.message;
}

$("f-address").addEventListener("keydown", (ev) => {
  // Enter in the address looks it up rather than sending a call without a location.
  if ((ev as KeyboardEvent).key === "Enter") {
    ev.preventDefault();
    $("lookup").click();
  }
});
$("lookup").addEventListener("click", async () => {
  const form = $("new-incident");
  const q = $<HTMLInputElement>("f-address").value;
  try {
    const hit = await call<Answers["get_wall_geocode"]>(
      "GET",
      `/api/wall/geocode?q=${encodeURIComponent(q)}`,
    );
    form.querySelectorAll<HTMLElement>(".err").forEach((el) => (el.textContent = ""));
    $<HTMLInputElement>("f-lat").value = hit.location.lat.toFixed(6);
    $<HTMLInputElement>("f-lon").value = hit.location.lon.toFixed(6);
    if (!hit.exact) form.querySelector<HTMLElement>('.err[data-for="address"]')!.textContent = `nearest: ${hit.street} ${hit.number ?? ""}`;
    wallMap.map.panTo([hit.location.lat, hit.location.lon]);
  } catch (e) {
    showErrors(form, e, ["address"]);
  }
});

$("new-incident").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = $("new-incident");
  const v = (id: string) => $<HTMLInputElement>(id).value.trim();
  const lat = v("f-lat") === "" ? NaN : Number(v("f-lat"));
  const lon = v("f-lon") === "" ? NaN : Number(v("f-lon"));
  const body: Record<string, unknown> = {
    location: { lat: Number.isFinite(lat) ? lat : v("f-lat") || null, lon: Number.isFinite(lon) ? lon : v("f-lon") || null },
    incident_type: v("f-type"),
    priority: v("f-priority"),
  };
  const caller: Record<string, string> = {};
  if (v("f-caller")) caller.name = v("f-caller");
  if (v("f-callback")) caller.call_back = v("f-callback");
  if (Object.keys(caller).length) body.caller = caller;
  if (v("f-lat") === "" || v("f-lon") === "") {
    showErrors(form, new ApiError(0, "client", "give the location: look up an address or click the map", { field: "location" }), []);
    return;
  }
  $<HTMLButtonElement>("create").disabled = true;
  try {
    const res = await call<Answers["post_incidents"]>("POST", "/api/incidents", body);
    form.querySelectorAll<HTMLElement>(".err").forEach((el) => (el.textContent = ""));
    (form as HTMLFormElement).reset();
    pick("incident", res.incident_id);
  } catch (e) {
    showErrors(form, e, ["location", "incident_type", "priority", "caller", "call_back", "name", "lat", "lon"]);
  } finally {
    $<HTMLButtonElement>("create").disabled = false;
  }
});

function reasonText(r: Reason): string {
  switch (r.reason) {
    case "eta": return `ETA ${clock(r.eta_s)} by road`;
    case "distance": return `${(r.distance_m / 1000).toFixed(1)} km straight`;
    case "inside_area": return `home in ${r.district}`;
    case "other_area": return `from ${r.home}`;
    case "other_agency": return `other agency${r.agency ? " " + r.agency : ""}`;
    default: return label(r.reason);
  }
}

let recFor: string | null = null;
let recHtml = "";
async function loadRecommendation(id: string) {
  const box = document.getElementById("rec");
  if (!box) return;
  box.innerHTML = `<div class="hint">asking for a recommendation…</div>`;
  try {
    const r = await call<Answers["get_incidents_id_recommendation"]>("GET", `/api/incidents/${id}/recommendation`);
    const picks = new Set<string>();
    for (const k of r.recommendation.kinds) for (const c of k.candidates.slice(0, k.wanted)) picks.add(c.unit);
    const kinds = r.recommendation.kinds
      .map(
        (k) => `<div class="rec-kind"><b>${esc(label(k.kind))}</b> × ${k.wanted}
      ${k.candidates
        .slice(0, 5)
        .map(
          (c) => `<label class="cand"><input type="checkbox" name="unit" value="${esc(c.unit)}" ${picks.has(c.unit) ? "checked" : ""}/>
        <b class="cs">${esc(r.call_signs[c.unit] ?? c.unit.slice(0, 8))}</b> <span class="eta">${clock(c.eta_s)}</span>
        <span class="why">${c.reasons.map(reasonText).map(esc).join(" · ")}</span></label>`,
        )
        .join("")}</div>`,
      )
      .join("");
    const short = r.recommendation.shortfall.map((s) => `<div class="warn">short of ${esc(label(s.kind))}: ${s.found} of ${s.wanted}</div>`).join("");
    recHtml = `<form id="rec-form">${kinds || '<div class="empty">nothing more to send</div>'}${short}
      <div class="row"><button class="btn primary" type="button" id="accept" ${picks.size ? "" : "disabled"}>Accept recommendation</button>
      <button class="btn" type="button" id="override">Send checked</button></div><div class="err" data-for="form"></div></form>`;
    if (recFor === id) box.innerHTML = recHtml;
  } catch (e) {
    recHtml = `<div class="err">${esc((e as Error).message)}</div>`;
    if (recFor === id) box.innerHTML = recHtml;
  }
}

async function dispatch(id: string, units?: string[]) {
  const form = document.getElementById("rec-form") ?? $("selected");
  try {
    const res = await call<Answers["post_incidents_id_dispatch"]>(
      "POST",
      `/api/incidents/${id}/dispatch`,
      units ? { units } : {},
    );
    const failed = res.results.filter((r) => !r.assigned);
    if (failed.length) showErrors(form, new ApiError(409, "partial", failed.map((f) => f.error?.message ?? "not assigned").join("; ")), []);
    recFor = null;
    renderSelected(true);
  } catch (e) {
    showErrors(form, e, []);
  }
}

let selectedSig = "";
function renderSelected(fresh: boolean) {
  const box = $("selected");
  if (!selected) return;
  const s = shown();
  const row = selected.kind === "incident" ? s.incidents.get(selected.id) : s.units.get(selected.id);
  // Re-drawn only when what it shows changed, so an operator's choice in its forms stays.
  const sig = JSON.stringify([selected, row ?? null, !!history, recFor, recHtml.length]);
  if (!fresh && sig === selectedSig) return;
  selectedSig = sig;
  const kept = new Map<string, string>();
  box.querySelectorAll<HTMLSelectElement>("select[id]").forEach((el) => kept.set(el.id, el.value));
  try {
    renderSelectedNow(box, s, fresh);
  } finally {
    if (!fresh)
      box.querySelectorAll<HTMLSelectElement>("select[id]").forEach((el) => {
        const v = kept.get(el.id);
        if (v !== undefined && [...el.options].some((o) => o.value === v)) el.value = v;
      });
  }
}

function renderSelectedNow(box: HTMLElement, s: ReturnType<typeof shown>, fresh: boolean) {
  if (!selected) return;
  if (selected.kind === "incident") {
    const i = s.incidents.get(selected.id);
    if (!i) {
      box.innerHTML = `<div class="empty">incident not in view yet…</div>`;
      return;
    }
    const units = Object.entries(i.units)
      .map(([u, p]) => `<li><b>${esc(s.units.get(u)?.call_sign ?? u.slice(0, 8))}</b> ${esc(label(p))}</li>`)
      .join("");
    const closed = i.status === "closed" || i.status === "merged";
    if (fresh || recFor !== i.id) {
      recFor = i.id;
      recHtml = "";
    }
    const dispOptions = DISPOSITIONS.map((d) => `<option value="${d}">${label(d)}</option>`).join("");
    box.innerHTML = `<div class="sel-head" data-selected-incident="${esc(i.id)}"><span class="prio prio-${i.priority}">${i.priority}</span> ${esc(label(i.incident_type))} · ${esc(i.area?.name ?? "")}
      <div class="sub">${esc(label(i.status))} · reported ${hhmmss(Date.parse(i.reported_at))}</div></div>
      <ul class="assigned">${units}</ul>
      ${closed || history ? "" : `<h3>Recommendation</h3><div id="rec">${recHtml}</div>
      <form id="close-form" class="row"><select id="f-disposition">${dispOptions}</select><button class="btn" id="close">Close incident</button></form><div class="err" data-for="form" id="close-err"></div>`}`;
    if (!closed && !history && !recHtml) void loadRecommendation(i.id);
  } else {
    const u = s.units.get(selected.id);
    if (!u) {
      box.innerHTML = `<div class="empty">unit not in view yet…</div>`;
      return;
    }
    const st = STATUS_STYLE[u.status];
    box.innerHTML = `<div class="sel-head" data-selected-unit="${esc(u.id)}"><b class="cs">${esc(u.call_sign)}</b> ${esc(label(u.kind))} · ${esc(u.agency)}
      <div class="sub"><span class="badge" style="--c:${st.colour}">${st.label}</span> since ${hhmmss(Date.parse(u.status_since))}${u.incident ? " · on an incident" : ""}</div></div>
      ${history ? "" : `<form id="status-form"><div class="row"><select id="f-status">${UNIT_STATUSES.map((x) => `<option value="${x}" ${x === u.status ? "selected" : ""}>${STATUS_STYLE[x].label}</option>`).join("")}</select>
      <button class="btn" id="set-status">Change status</button></div><div class="err" data-for="form"></div></form>`}`;
  }
}

$("selected").addEventListener("click", async (ev) => {
  const t = ev.target as HTMLElement;
  if (!selected) return;
  if (t.id === "accept") {
    ev.preventDefault();
    await dispatch(selected.id);
  } else if (t.id === "override") {
    ev.preventDefault();
    const units = [...document.querySelectorAll<HTMLInputElement>('#rec-form input[name="unit"]:checked')].map((x) => x.value);
    if (!units.length) return showErrors($("rec-form"), new ApiError(0, "client", "check at least one unit"), []);
    await dispatch(selected.id, units);
  } else if (t.id === "close") {
    ev.preventDefault();
    try {
      await call("POST", `/api/incidents/${selected.id}/close`, { disposition: $<HTMLSelectElement>("f-disposition").value });
    } catch (e) {
      $("close-err").textContent = (e as Error).message;
    }
  } else if (t.id === "set-status") {
    ev.preventDefault();
    const form = $("status-form");
    try {
      await call("POST", `/api/units/${selected.id}/status`, { status: $<HTMLSelectElement>("f-status").value });
      form.querySelectorAll<HTMLElement>(".err").forEach((el) => (el.textContent = ""));
    } catch (e) {
      showErrors(form, e, ["status"]);
    }
  }
});

// ---------------------------------------------------------------------------------------
// Time travel: fold the log up to a moment (the server does it), play forward at speed.

let timeline: { first: number; last: number } | null = null;
let playing = false;
let fetching = false;

async function loadTimeline() {
  try {
    const t = await call<Answers["get_wall_timeline"]>("GET", "/api/wall/timeline");
    if (t.first) timeline = { first: Date.parse(t.first.at), last: Date.now() };
  } catch {
    /* shown when used */
  }
}

function rangeToTime(v: number) {
  if (!timeline) return Date.now();
  return timeline.first + ((timeline.last - timeline.first) * v) / 1000;
}

async function showMoment(at: number) {
  if (fetching) return;
  fetching = true;
  try {
    const res = await call<Answers["get_wall_at"]>("GET", `/api/wall/at?time=${encodeURIComponent(new Date(at).toISOString())}`);
    history = { at, incidents: new Map(res.incidents.map((i) => [i.id, i])), units: new Map(res.units.map((u) => [u.id, u])) };
    wallMap.reset(history.incidents.values(), history.units.values());
    void loadClosures();
    document.body.classList.add("history");
    $("history-banner").hidden = false;
    $("history-banner").textContent = `HISTORY — the city at ${new Date(at).toLocaleString("en-GB", { hour12: false })} (log @${res.position ?? 0}) ${playing ? "▶ playing" : "paused"}`;
    $("tt-label").textContent = hhmmss(at);
    $<HTMLButtonElement>("tt-live").disabled = false;
    $("tt-error").textContent = "";
    renderBoards();
  } catch (e) {
    $("tt-error").textContent = (e as Error).message;
  } finally {
    fetching = false;
  }
}

function goLive() {
  history = null;
  void loadClosures();
  playing = false;
  $("tt-play").textContent = "▶ Play";
  document.body.classList.remove("history");
  $("history-banner").hidden = true;
  $<HTMLInputElement>("tt-range").value = "1000";
  $("tt-label").textContent = "live";
  $<HTMLButtonElement>("tt-live").disabled = true;
  wallMap.reset(live.incidents.values(), live.units.values());
  renderBoards();
}

$("tt-range").addEventListener("input", async () => {
  await loadTimelineIfNeeded();
  const v = Number($<HTMLInputElement>("tt-range").value);
  if (v >= 1000) return goLive();
  void showMoment(rangeToTime(v));
});
async function loadTimelineIfNeeded() {
  if (!timeline || Date.now() - timeline.last > 10000) await loadTimeline();
}
$("tt-live").addEventListener("click", goLive);
$("tt-play").addEventListener("click", async () => {
  await loadTimelineIfNeeded();
  if (!timeline) {
    $("tt-error").textContent = "the log is empty: nothing to replay";
    return;
  }
  playing = !playing;
  $("tt-play").textContent = playing ? "❚❚ Pause" : "▶ Play";
  if (playing && !history) await showMoment(timeline.first);
});
window.setInterval(() => {
  if (!playing || !history || !timeline) return;
  const speed = Number($<HTMLSelectElement>("tt-speed").value);
  const next = history.at + speed * 1000;
  if (next >= Date.now()) return goLive();
  timeline.last = Date.now();
  $<HTMLInputElement>("tt-range").value = String(Math.round(((next - timeline.first) / (timeline.last - timeline.first)) * 1000));
  void showMoment(next);
}, 1000);

// ---------------------------------------------------------------------------------------

if (!token()) $("login").hidden = false;
else void loadCity();
const bench = new URLSearchParams(location.search).get("bench");
if (bench) {
  import("./bench").then((m) => m.runBench(live, wallMap, bench));
} else {
  live.start();
}
renderBoards();
