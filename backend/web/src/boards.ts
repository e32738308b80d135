/** The incident queue, the unit board, the key figures and the overdue timers. */
import type { ResponseTimesToday } from "./api.gen";
import type { Incident, Unit, UnitStatus } from "./types";
import { OVERDUE, STATUS_STYLE, UNIT_STATUSES } from "./types";
import { clock, esc, label } from "./util";

const PRIORITY_RANK: Record<string, number> = { P1: 1, P2: 2, P3: 3, P4: 4, P5: 5 };
/** Rows drawn at most in the unit board (counts cover all). */
const MAX_UNIT_ROWS = 150;

export function openIncidents(incidents: Iterable<Incident>): Incident[] {
  return [...incidents]
    .filter((i) => i.status !== "closed" && i.status !== "merged")
    .sort((a, b) => PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] || Date.parse(a.reported_at) - Date.parse(b.reported_at));
}

function activeUnits(i: Incident): number {
  return Object.values(i.units).filter((p) => p !== "cleared").length;
}

/** Seconds an unserved incident has waited for a unit, or null when a unit is on it. */
export function waitingS(i: Incident, now: number): number | null {
  return activeUnits(i) === 0 ? (now - Date.parse(i.reported_at)) / 1000 : null;
}

export interface UnitTimer { overdue: boolean; text: string }

export function unitTimer(u: Unit, now: number): UnitTimer {
  const since = (now - Date.parse(u.status_since)) / 1000;
  if (u.status === "dispatched" && !u.acknowledged)
    return { overdue: since > OVERDUE.notAcknowledgedS, text: `not acknowledged ${clock(since)}` };
  if (u.status === "dispatched") return { overdue: since > OVERDUE.notEnRouteS, text: `not en route ${clock(since)}` };
  if (u.status === "on_scene") return { overdue: since > OVERDUE.onSceneS, text: `on scene ${clock(since)}` };
  return { overdue: false, text: clock(since) };
}

export function renderQueue(el: HTMLElement, incidents: Incident[], units: Map<string, Unit>, now: number, selected: string | null) {
  if (incidents.length === 0) {
    el.innerHTML = `<div class="empty">No open incidents</div>`;
    return;
  }
  const rows = incidents.slice(0, 60).map((i) => {
    const wait = waitingS(i, now);
    const overdue = wait !== null && wait > OVERDUE.waitingS[i.priority];
    const signs = Object.entries(i.units)
      .filter(([, p]) => p !== "cleared")
      .map(([id, p]) => `<span class="chip s-${p}">${esc(units.get(id)?.call_sign ?? id.slice(0, 6))}</span>`)
      .join("");
    return `<tr class="incident-row${overdue ? " overdue" : ""}${selected === i.id ? " selected" : ""}" data-incident="${esc(i.id)}">
      <td><span class="prio prio-${i.priority}">${i.priority}</span></td>
      <td class="type">${esc(label(i.incident_type))}<div class="sub">${esc(i.area?.name ?? "")}</div></td>
      <td class="num">${clock((now - Date.parse(i.reported_at)) / 1000)}</td>
      <td class="num wait">${wait === null ? "—" : (overdue ? "⚠ " : "") + clock(wait)}</td>
      <td class="status">${esc(label(i.status))}<div class="units">${signs}</div></td>
    </tr>`;
  });
  const more = incidents.length > 60 ? `<div class="more">+ ${incidents.length - 60} more</div>` : "";
  setHtml(el, `<table class="queue"><thead><tr><th>Pri</th><th>Type / area</th><th>Age</th><th>Waiting</th><th>Status / units</th></tr></thead><tbody>${rows.join("")}</tbody></table>${more}`);
}

export function renderUnits(el: HTMLElement, units: Map<string, Unit>, now: number, selected: string | null) {
  const counts = new Map<UnitStatus, number>();
  for (const u of units.values()) counts.set(u.status, (counts.get(u.status) ?? 0) + 1);
  const tally = UNIT_STATUSES.map((s) => {
    const st = STATUS_STYLE[s];
    return `<span class="tally" title="${st.label}"><svg width="18" height="18" viewBox="-10 -10 20 20">${svgShape(st.shape, st.colour)}</svg>${st.short} <b>${counts.get(s) ?? 0}</b></span>`;
  }).join("");
  // Overdue first, then busy units by status, available ones last; call sign within.
  const keyed = [...units.values()].map((u) => {
    const t = unitTimer(u, now);
    const rank = (t.overdue ? 0 : 10) + (u.status === "available" ? 100 : UNIT_STATUSES.indexOf(u.status));
    return { u, t, rank };
  });
  keyed.sort((a, b) => a.rank - b.rank || (a.u.call_sign < b.u.call_sign ? -1 : a.u.call_sign > b.u.call_sign ? 1 : 0));
  const list = keyed;
  const rows = list.slice(0, MAX_UNIT_ROWS).map(({ u, t }) => {
    const st = STATUS_STYLE[u.status] ?? STATUS_STYLE.out_of_service;
    return `<tr class="unit-row${t.overdue ? " overdue" : ""}${selected === u.id ? " selected" : ""}" data-unit="${esc(u.id)}" data-status="${u.status}">
      <td class="cs">${esc(u.call_sign)}</td>
      <td><span class="badge" style="--c:${st.colour}"><svg width="16" height="16" viewBox="-10 -10 20 20">${svgShape(st.shape, st.colour)}</svg>${st.label}</span></td>
      <td class="num">${t.overdue ? "⚠ " : ""}${esc(t.text)}</td>
      <td class="sub">${esc(u.area?.name ?? "")}</td>
    </tr>`;
  });
  const more = list.length > MAX_UNIT_ROWS ? `<div class="more">+ ${list.length - MAX_UNIT_ROWS} more units</div>` : "";
  setHtml(el, `<div class="tallies">${tally}</div><table class="units-table"><tbody>${rows.join("")}</tbody></table>${more}`);
}

/** `GET /api/wall/response-times`. */
export type ResponseTimes = ResponseTimesToday;

function responseFigure(rt: ResponseTimes | null): string {
  if (!rt) return "";
  const t = (x?: number | null) => (x == null ? "—" : clock(x));
  const sc = rt.call_to_on_scene_s, d = rt.call_to_dispatch_s;
  return `<div class="fig" data-figure="response"><div class="k">Response today (p50 / p90)</div>
    <div class="v">${t(sc.p50)}<small> / ${t(sc.p90)}</small></div>
    <div class="s">call → on scene, ${sc.count} of ${rt.calls} calls; to dispatch ${t(d.p50)} / ${t(d.p90)}</div></div>`;
}

export function renderFigures(el: HTMLElement, open: Incident[], units: Map<string, Unit>, now: number, rt: ResponseTimes | null = null) {
  const byPrio = ["P1", "P2", "P3", "P4", "P5"].map((p) => `<span class="prio prio-${p}">${p}</span> ${open.filter((i) => i.priority === p).length}`).join(" ");
  const waiting = open.filter((i) => {
    const w = waitingS(i, now);
    return w !== null;
  }).length;
  const overdueUnits = [...units.values()].filter((u) => unitTimer(u, now).overdue).length;
  const overdueIncidents = open.filter((i) => {
    const w = waitingS(i, now);
    return w !== null && w > OVERDUE.waitingS[i.priority];
  }).length;
  const perArea = new Map<string, { avail: number; total: number }>();
  for (const u of units.values()) {
    const name = u.area?.name ?? "outside areas";
    const a = perArea.get(name) ?? { avail: 0, total: 0 };
    a.total++;
    if (u.status === "available" || u.status === "returning") a.avail++;
    perArea.set(name, a);
  }
  const areas = [...perArea.entries()].sort((a, b) => a[1].avail - b[1].avail || a[0].localeCompare(b[0]));
  const available = [...units.values()].filter((u) => u.status === "available" || u.status === "returning").length;
  setHtml(el, `
    <div class="fig"><div class="k">Open incidents</div><div class="v" data-figure="open">${open.length}</div><div class="s">${byPrio}</div></div>
    <div class="fig"><div class="k">Waiting for a unit</div><div class="v${overdueIncidents ? " bad" : ""}" data-figure="waiting">${waiting}</div><div class="s">${overdueIncidents} overdue</div></div>
    <div class="fig"><div class="k">Units available</div><div class="v" data-figure="available">${available}<small>/${units.size}</small></div><div class="s">${overdueUnits} unit timers overdue</div></div>
    ${responseFigure(rt)}
    <div class="fig areas"><div class="k">Available by area</div><div class="s">${areas
      .slice(0, 8)
      .map(([n, a]) => `<span class="area${a.avail === 0 ? " bad" : ""}">${esc(n)} <b>${a.avail}</b>/${a.total}</span>`)
      .join("")}</div></div>`);
}

const lastHtml = new WeakMap<HTMLElement, string>();
/** Replaces an element's content only when it changed, so a quiet board costs no layout. */
function setHtml(el: HTMLElement, html: string) {
  if (lastHtml.get(el) === html) return;
  lastHtml.set(el, html);
  el.innerHTML = html;
}

export function svgShape(kind: string, colour: string): string {
  const st = `fill="${colour}" stroke="#000" stroke-width="1.5"`;
  switch (kind) {
    case "circle": return `<circle r="7" ${st}/>`;
    case "triangle": return `<polygon points="0,-8 7,6 -7,6" ${st}/>`;
    case "down": return `<polygon points="0,8 7,-6 -7,-6" ${st}/>`;
    case "arrow": return `<polygon points="0,-9 6,6 0,3 -6,6" ${st}/>`;
    case "square": return `<rect x="-6.5" y="-6.5" width="13" height="13" ${st}/>`;
    case "diamond": return `<polygon points="0,-8 8,0 0,8 -8,0" ${st}/>`;
    case "plus": return `<polygon points="-3,-8 3,-8 3,-3 8,-3 8,3 3,3 3,8 -3,8 -3,3 -8,3 -8,-3 -3,-3" ${st}/>`;
    default: return `<polygon points="-8,-5 -5,-8 0,-3 5,-8 8,-5 3,0 8,5 5,8 0,3 -5,8 -8,5 -3,0" ${st}/>`;
  }
}
