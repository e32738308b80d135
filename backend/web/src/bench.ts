/**
 * The synthetic feed for `bench/ui.mjs`: N units each moving once a second and M incidents,
 * delivered as feed messages (JSON text, parsed like the socket's) into the same state and
 * map code the live page uses. `?bench=units:2000,incidents:500` or `?bench=units:0,incidents:0`
 * for the empty baseline.
 */
import type { LiveState } from "./feed";
import type { WallMap } from "./map";
import type { Incident, Unit } from "./types";
import { UNIT_STATUSES } from "./types";

export function runBench(live: LiveState, map: WallMap, spec: string) {
  const opts = Object.fromEntries(spec.split(",").map((kv) => kv.split(":")).map(([k, v]) => [k, Number(v)]));
  const nUnits = opts.units ?? 2000, nIncidents = opts.incidents ?? 500;
  // Inside the bundled city, so that every marker is in view over the base map.
  const [[s, w], [n, e]] = [[60.1645, 24.9355], [60.1787, 24.9531]];
  const rnd = mulberry(42);
  const now = new Date().toISOString();
  const incidents: Incident[] = [];
  for (let i = 0; i < nIncidents; i++) {
    incidents.push({
      id: `i-${i}`, status: "reported", incident_type: "medical", priority: (["P1", "P2", "P3", "P4", "P5"] as const)[i % 5],
      location: { lat: s + (n - s) * rnd(), lon: w + (e - w) * rnd() }, area: { id: "a", name: "Area " + (i % 9) },
      source: "hotline", triaged: false, reported_at: now, updated_at: now, units: {}, notes: 0, position: i,
    });
  }
  const units: Unit[] = [];
  for (let i = 0; i < nUnits; i++) {
    units.push({
      id: `u-${i}`, call_sign: `U${i}`, kind: "engine", agency: "bench", home_station: "s", capabilities: [],
      status: UNIT_STATUSES[i % UNIT_STATUSES.length], status_since: now, acknowledged: true,
      location: { lat: s + (n - s) * rnd(), lon: w + (e - w) * rnd() }, heading_deg: 0, area: { id: "a", name: "Area " + (i % 9) }, position: i,
    });
  }
  let position = nUnits + nIncidents;
  live.feedSynthetic();
  live.apply(JSON.parse(JSON.stringify({ type: "snapshot", position, incidents, units })));
  (window as any).benchReady = true;
  // Every unit moves once a second: spread over 10 ticks of 100 ms.
  let k = 0;
  window.setInterval(() => {
    const per = Math.ceil(nUnits / 10);
    for (let j = 0; j < per; j++) {
      const u = units[(k * per + j) % Math.max(1, nUnits)];
      if (!u) break;
      u.location = { lat: u.location!.lat + (rnd() - 0.5) * 0.0004, lon: u.location!.lon + (rnd() - 0.5) * 0.0008 };
      position++;
      live.apply(JSON.parse(JSON.stringify({ type: "delta", position, unit: u })));
    }
    k = (k + 1) % 10;
  }, 100);
}

function mulberry(seed: number) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
