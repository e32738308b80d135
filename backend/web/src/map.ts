/**
 * The map: Leaflet with the city's base layers drawn on canvas from the server's GeoJSON
 * (no tile server), and one canvas overlay for incidents and units that animates units
 * from their last drawn point to each new position.
 */
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import type { CityMap } from "./api.gen";
import type { Incident, RoadClosure, Unit, UnitStatus } from "./types";
import { PRIORITY_COLOUR, STATUS_STYLE } from "./types";

/** How long a unit takes to glide to a new position. */
const GLIDE_MS = 900;
/** A draw slower than this makes gliding run at half rate. */
const HEAVY_DRAW_MS = 6;
/** Up to this many units, every call sign is written on the map. */
const MAX_ALL_LABELS = 300;
/** Beyond that, the call signs of at most this many busy (not available) units. */
const MAX_BUSY_LABELS = 300;

interface Sprite {
  unit: Unit;
  fromLat: number; fromLon: number;
  toLat: number; toLon: number;
  t0: number;
}

/** `GET /api/wall/city`, its layers read as GeoJSON (the document says only "an object"). */
export type CityDoc = Omit<CityMap, "base" | "districts" | "stations" | "hospitals"> & {
  base: GeoJSON.FeatureCollection;
  districts: GeoJSON.FeatureCollection;
  stations: GeoJSON.FeatureCollection;
  hospitals: GeoJSON.FeatureCollection;
};

function roadStyle(f?: GeoJSON.Feature): L.PathOptions {
  const p = (f?.properties ?? {}) as Record<string, string>;
  const layer = p.layer ?? p.kind ?? "";
  const cls = p.class ?? p.road_class ?? "";
  if (layer === "water" || cls === "water" || p.kind === "water" || p.kind === "coastline")
    return { color: "#1d4f7a", weight: 2, opacity: 0.9 };
  if (layer === "railway" || p.kind === "railway") return { color: "#6b6b6b", weight: 1.5, dashArray: "4 4", opacity: 0.8 };
  const major = /motorway|trunk|primary/.test(cls);
  const mid = /secondary|tertiary/.test(cls);
  return { color: major ? "#8a8f98" : mid ? "#60656d" : "#3f444b", weight: major ? 2.5 : mid ? 1.6 : 1, opacity: 0.95 };
}

export class WallMap {
  map: L.Map;
  private canvas: HTMLCanvasElement;
  private ctx: CanvasRenderingContext2D;
  private sprites = new Map<string, Sprite>();
  private incidents = new Map<string, Incident>();
  private dirty = true;
  private autoFit = true;
  private skip = false;
  /** Something other than a position changed: draw on the next frame whatever the load. */
  private urgent = true;
  private lastDrawMs = 0;
  private cityBounds: L.LatLngBounds | null = null;
  private selected: string | null = null;
  /** Frame durations (ms) of drawing, kept for the benchmark. */
  frameTimes: number[] = [];
  /** When each draw began (`performance.now()`), kept for the benchmark. */
  drawnAt: number[] = [];
  onPick: ((what: "incident" | "unit", id: string) => void) | null = null;
  onMapClick: ((lat: number, lon: number) => void) | null = null;
  /** Road closures in force, drawn under the units. */
  private closures = L.layerGroup();

  constructor(el: HTMLElement) {
    this.map = L.map(el, {
      preferCanvas: true,
      zoomControl: true,
      attributionControl: true,
      zoomSnap: 0.25,
      center: [60.17, 24.94],
      zoom: 12,
    });
    this.map.attributionControl.setPrefix(false);
    this.closures.addTo(this.map);
    this.canvas = document.createElement("canvas");
    this.canvas.className = "live-layer";
    el.appendChild(this.canvas);
    this.ctx = this.canvas.getContext("2d", { desynchronized: true })!;
    const redraw = () => {
      this.resize();
      this.dirty = true;
      this.urgent = true;
    };
    this.map.on("move zoom resize viewreset", redraw);
    new ResizeObserver(() => {
      this.map.invalidateSize({ pan: false });
      if (this.autoFit && this.cityBounds) this.map.fitBounds(this.cityBounds, { padding: [10, 10], animate: false });
      redraw();
    }).observe(el);
    // Until someone moves the map by hand, it keeps the whole city in view at any size.
    this.map.on("dragstart", () => (this.autoFit = false));
    el.addEventListener("wheel", () => (this.autoFit = false), { passive: true });
    this.map.on("click", (ev: L.LeafletMouseEvent) => {
      const hit = this.hitTest(ev.containerPoint);
      if (hit && this.onPick) this.onPick(hit[0], hit[1]);
      else if (this.onMapClick) this.onMapClick(ev.latlng.lat, ev.latlng.lng);
    });
    this.resize();
    const loop = () => {
      this.frame();
      requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
  }

  setCity(city: CityDoc) {
    this.map.attributionControl.addAttribution(city.attribution.replace(/</g, "&lt;"));
    L.geoJSON(city.districts, {

      style: { color: "#5a4b8a", weight: 1.5, opacity: 0.7, fillColor: "#2a2440", fillOpacity: 0.12, dashArray: "6 4" },
      interactive: false,
    }).addTo(this.map);
    L.geoJSON(city.base, {

      style: roadStyle,
      interactive: false,
      filter: (f) => ["road", "water", "railway", "coastline"].includes(String(f.properties?.layer)),
    }).addTo(this.map);
    L.geoJSON(city.stations, {
      pointToLayer: (f, ll) => {
        const kind = String(f.properties?.kind ?? "");
        const letter = kind === "fire" ? "F" : kind === "ambulance" ? "A" : kind === "police" ? "P" : "S";
        return L.marker(ll, {
          interactive: false,
          keyboard: false,
          icon: L.divIcon({ className: "station-icon", html: `<span>${letter}</span>`, iconSize: [22, 22] }),
        }).bindTooltip(String(f.properties?.name ?? ""), { permanent: false });
      },
    }).addTo(this.map);
    L.geoJSON(city.hospitals, {
      pointToLayer: (_f, ll) =>
        L.marker(ll, {
          interactive: false,
          keyboard: false,
          icon: L.divIcon({ className: "hospital-icon", html: "<span>H</span>", iconSize: [22, 22] }),
        }),
    }).addTo(this.map);
    const [[s, w], [n, e]] = city.bounds;
    this.cityBounds = L.latLngBounds([s, w], [n, e]);
    if (this.autoFit) this.map.fitBounds(this.cityBounds, { padding: [10, 10], animate: false });
    this.dirty = true;
  }

  /** Replaces the road closures shown: a dashed red circle each, its note as a tooltip. */
  setClosures(closures: RoadClosure[]) {
    this.closures.clearLayers();
    for (const c of closures) {
      L.circle([c.location.lat, c.location.lon], {
        radius: c.radius_m,
        color: "#ff4d4d",
        weight: 2,
        dashArray: "5 4",
        fillColor: "#ff4d4d",
        fillOpacity: 0.12,
        interactive: false,
      })
        .bindTooltip(`Road closed${c.note ? `: ${c.note}` : ""} (${c.roads} roads)`, { permanent: false })
        .addTo(this.closures);
    }
  }

  select(id: string | null) {
    this.selected = id;
    this.dirty = true;
    this.urgent = true;
  }

  /** Replaces everything (a snapshot or a moment of the past). */
  reset(incidents: Iterable<Incident>, units: Iterable<Unit>) {
    this.incidents.clear();
    for (const i of incidents) this.incidents.set(i.id, i);
    this.sprites.clear();
    for (const u of units) this.putUnit(u, false);
    this.dirty = true;
    this.urgent = true;
  }

  putIncident(i: Incident) {
    this.incidents.set(i.id, i);
    this.dirty = true;
    this.urgent = true;
  }

  putUnit(u: Unit, glide = true) {
    const old = this.sprites.get(u.id);
    if (!u.location) {
      this.sprites.delete(u.id);
      this.dirty = true;
      return;
    }
    const now = performance.now();
    if (!old || old.unit.status !== u.status) this.urgent = true;
    if (old && glide) {
      const [lat, lon] = this.where(old, now);
      old.fromLat = lat; old.fromLon = lon;
      old.toLat = u.location.lat; old.toLon = u.location.lon;
      old.t0 = now;
      old.unit = u;
    } else {
      this.sprites.set(u.id, {
        unit: u,
        fromLat: u.location.lat, fromLon: u.location.lon,
        toLat: u.location.lat, toLon: u.location.lon,
        t0: now - GLIDE_MS,
      });
    }
    this.dirty = true;
  }

  private where(s: Sprite, now: number): [number, number] {
    const k = Math.min(1, Math.max(0, (now - s.t0) / GLIDE_MS));
    if (k >= 1) return [s.toLat, s.toLon];
    const e = k * (2 - k);
    return [s.fromLat + (s.toLat - s.fromLat) * e, s.fromLon + (s.toLon - s.fromLon) * e];
  }

  private resize() {
    const size = this.map.getSize();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(size.x * dpr), h = Math.round(size.y * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.canvas.style.width = size.x + "px";
      this.canvas.style.height = size.y + "px";
    }
  }

  private spriteScale = 0;
  private spriteDpr = 0;
  private sprites_ = new Map<string, { canvas: CanvasImageSource; size: number; half: number }>();
  /** A pre-drawn marker of `box` CSS pixels at this scale, drawn by `paint` around (0, 0). */
  private sprite(key: string, scale: number, dpr: number, box: number, paint: (c: CanvasRenderingContext2D, r: number) => void) {
    if (this.spriteScale !== scale || this.spriteDpr !== dpr) {
      this.sprites_.clear();
      this.spriteScale = scale;
      this.spriteDpr = dpr;
    }
    const full = key;
    let sp = this.sprites_.get(full);
    if (!sp) {
      // Whole device pixels, copied at 1:1 to whole-pixel spots: the fastest copy there is.
      const px = Math.ceil(box * scale * dpr);
      const size = px / dpr;
      const canvas = document.createElement("canvas");
      canvas.width = canvas.height = px;
      const c = canvas.getContext("2d")!;
      c.setTransform(dpr, 0, 0, dpr, px / 2, px / 2);
      paint(c, scale);
      const made: { canvas: CanvasImageSource; size: number; half: number } = { canvas, size, half: size / 2 };
      sp = made;
      this.sprites_.set(full, sp);
      // A bitmap is the cheapest source to copy from; the canvas serves until it is ready.
      if (typeof createImageBitmap === "function") void createImageBitmap(canvas).then((b) => (made.canvas = b), () => {});
    }
    return sp;
  }

  private hitTest(p: L.Point): ["incident" | "unit", string] | null {
    let best: ["incident" | "unit", string] | null = null;
    let bestD = 18 * 18;
    const now = performance.now();
    for (const s of this.sprites.values()) {
      const [lat, lon] = this.where(s, now);
      const q = this.map.latLngToContainerPoint([lat, lon]);
      const d = (q.x - p.x) ** 2 + (q.y - p.y) ** 2;
      if (d < bestD) { bestD = d; best = ["unit", s.unit.id]; }
    }
    for (const i of this.incidents.values()) {
      if (i.status === "closed" || i.status === "merged") continue;
      const q = this.map.latLngToContainerPoint([i.location.lat, i.location.lon]);
      const d = (q.x - p.x) ** 2 + (q.y - p.y) ** 2;
      if (d < bestD) { bestD = d; best = ["incident", i.id]; }
    }
    return best;
  }

  private frame() {
    const now = performance.now();
    let moving = false;
    for (const s of this.sprites.values()) {
      if (now - s.t0 < GLIDE_MS) { moving = true; break; }
    }
    if (!this.dirty && !moving) return;
    // A heavy scene glides at half the display's rate, leaving every other frame free for
    // the rest of the page (and the machine); a map move or a new row is drawn at once.
    this.skip = !this.skip;
    if (this.skip && !this.urgent && this.lastDrawMs > HEAVY_DRAW_MS) return;
    this.dirty = false;
    this.urgent = false;
    const t0 = performance.now();
    this.draw(now);
    this.lastDrawMs = performance.now() - t0;
    this.frameTimes.push(this.lastDrawMs);
    this.drawnAt.push(t0);
    if (this.frameTimes.length > 10000) this.frameTimes.splice(0, 5000);
    if (this.drawnAt.length > 10000) this.drawnAt.splice(0, 5000);
  }

  private draw(now: number) {
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const size = this.map.getSize();
    ctx.clearRect(0, 0, size.x, size.y);
    // Leaflet's pixel origin: project once per frame, then offset every point.
    const zoom = this.map.getZoom();
    const origin = this.map.getPixelOrigin();
    const panes = this.map.containerPointToLayerPoint([0, 0]);
    const ox = -origin.x - panes.x, oy = -origin.y - panes.y;
    // Web Mercator at this zoom (what Leaflet's default CRS does), without allocating.
    const world = 256 * Math.pow(2, zoom);
    const project = (lat: number, lon: number) => {
      const px = world * (0.5 + lon / 360);
      const py = world * (0.5 - Math.log(Math.tan(Math.PI / 4 + (lat * Math.PI) / 360)) / (2 * Math.PI));
      return [px + ox, py + oy];
    };
    const inView = (x: number, y: number) => x > -40 && y > -40 && x < size.x + 40 && y < size.y + 40;
    const scale = Math.max(1, Math.min(2.2, size.y / 900));

    // Incidents: a ring with the priority written inside (pre-drawn sprites: far cheaper to
    // copy than to fill, stroke and write 500 times a frame).
    for (const i of this.incidents.values()) {
      if (i.status === "closed" || i.status === "merged") continue;
      const [x, y] = project(i.location.lat, i.location.lon);
      if (!inView(x, y)) continue;
      const sp = this.sprite(`i:${i.priority}`, scale, dpr, 32, (c, r) => {
        c.beginPath();
        c.arc(0, 0, 13 * r, 0, Math.PI * 2);
        c.fillStyle = "#111";
        c.fill();
        c.lineWidth = 4 * r;
        c.strokeStyle = PRIORITY_COLOUR[i.priority];
        c.stroke();
        c.fillStyle = "#fff";
        c.textAlign = "center";
        c.textBaseline = "middle";
        c.font = `bold ${Math.round(11 * r)}px system-ui, sans-serif`;
        c.fillText(i.priority, 0, 0.5);
      });
      ctx.drawImage(sp.canvas, snap(x - sp.half, dpr), snap(y - sp.half, dpr));
      if (this.selected === i.id) {
        ctx.beginPath();
        ctx.arc(x, y, 20 * scale, 0, Math.PI * 2);
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#fff";
        ctx.stroke();
      }
    }

    // Units: a shape per status, filled with its colour, and the call sign beside it.
    // Every call sign when they can be read; in a crowd, those of busy units first.
    const labels = this.sprites.size <= MAX_ALL_LABELS || zoom >= 17;
    let labelled = 0;
    ctx.textAlign = "left";
    ctx.font = `600 ${Math.round(12 * scale)}px system-ui, sans-serif`;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#fff";
    for (const s of this.sprites.values()) {
      const [lat, lon] = this.where(s, now);
      const [x, y] = project(lat, lon);
      if (!inView(x, y)) continue;
      const st = STATUS_STYLE[s.unit.status as UnitStatus] ?? STATUS_STYLE.out_of_service;
      const heading = st.shape === "arrow" ? Math.round((s.unit.heading_deg ?? 0) / 22.5) % 16 : 0;
      const sp = this.sprite(`u:${s.unit.status}:${heading}`, scale, dpr, 22, (c, r) => {
        shape(c, st.shape, 0, 0, 7 * r, heading * 22.5);
        c.fillStyle = st.colour;
        c.fill();
        c.lineWidth = 1.5;
        c.strokeStyle = "#000";
        c.stroke();
      });
      ctx.drawImage(sp.canvas, snap(x - sp.half, dpr), snap(y - sp.half, dpr));
      if (this.selected === s.unit.id) {
        ctx.beginPath();
        ctx.arc(x, y, 13 * scale, 0, Math.PI * 2);
        ctx.strokeStyle = "#fff";
        ctx.lineWidth = 2;
        ctx.stroke();
        ctx.strokeStyle = "#000";
        ctx.lineWidth = 3;
      }
      if (labels || (s.unit.status !== "available" && labelled < MAX_BUSY_LABELS)) {
        labelled++;
        const text = s.unit.call_sign;
        ctx.strokeText(text, x + 10 * scale, y);
        ctx.fillText(text, x + 10 * scale, y);
      }
    }
  }
}

/** The nearest whole device pixel, in CSS pixels. */
function snap(v: number, dpr: number): number {
  return Math.round(v * dpr) / dpr;
}

/** Traces a status shape around (x, y) with radius r. */
export function shape(ctx: CanvasRenderingContext2D, kind: string, x: number, y: number, r: number, heading?: number) {
  ctx.beginPath();
  switch (kind) {
    case "circle":
      ctx.arc(x, y, r, 0, Math.PI * 2);
      break;
    case "triangle":
      ctx.moveTo(x, y - r * 1.15); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8); ctx.closePath();
      break;
    case "down":
      ctx.moveTo(x, y + r * 1.15); ctx.lineTo(x + r, y - r * 0.8); ctx.lineTo(x - r, y - r * 0.8); ctx.closePath();
      break;
    case "arrow": {
      const a = ((heading ?? 0) * Math.PI) / 180;
      const pts: [number, number][] = [[0, -1.3], [0.9, 0.9], [0, 0.45], [-0.9, 0.9]];
      pts.forEach(([px, py], k) => {
        const qx = x + r * (px * Math.cos(a) - py * Math.sin(a));
        const qy = y + r * (px * Math.sin(a) + py * Math.cos(a));
        if (k === 0) ctx.moveTo(qx, qy); else ctx.lineTo(qx, qy);
      });
      ctx.closePath();
      break;
    }
    case "square":
      ctx.rect(x - r * 0.9, y - r * 0.9, r * 1.8, r * 1.8);
      break;
    case "diamond":
      ctx.moveTo(x, y - r * 1.2); ctx.lineTo(x + r * 1.2, y); ctx.lineTo(x, y + r * 1.2); ctx.lineTo(x - r * 1.2, y); ctx.closePath();
      break;
    case "plus": {
      const t = r * 0.45;
      ctx.moveTo(x - t, y - r); ctx.lineTo(x + t, y - r); ctx.lineTo(x + t, y - t); ctx.lineTo(x + r, y - t);
      ctx.lineTo(x + r, y + t); ctx.lineTo(x + t, y + t); ctx.lineTo(x + t, y + r); ctx.lineTo(x - t, y + r);
      ctx.lineTo(x - t, y + t); ctx.lineTo(x - r, y + t); ctx.lineTo(x - r, y - t); ctx.lineTo(x - t, y - t); ctx.closePath();
      break;
    }
    default: {
      const t = r * 0.35;
      ctx.moveTo(x - r, y - r + t); ctx.lineTo(x - r + t, y - r); ctx.lineTo(x, y - t); ctx.lineTo(x + r - t, y - r);
      ctx.lineTo(x + r, y - r + t); ctx.lineTo(x + t, y); ctx.lineTo(x + r, y + r - t); ctx.lineTo(x + r - t, y + r);
      ctx.lineTo(x, y + t); ctx.lineTo(x - r + t, y + r); ctx.lineTo(x - r, y + r - t); ctx.lineTo(x - t, y); ctx.closePath();
    }
  }
}
