/**
 * The live state of the city from the wall-display feed: a snapshot, then deltas with log
 * positions. Reconnects by itself with `after=<last position>` so the server sends only what
 * was missed. Knows whether its data is live or stale, and since when.
 */
import type { FeedMessage, Incident, Unit } from "./types";

export type Connection = "connecting" | "live" | "lost" | "unauthorized";

export interface Listener {
  /** Something changed: whole state (snapshot) or a few rows. */
  onChange(kind: "snapshot" | "incident" | "unit", row?: Incident | Unit): void;
  onConnection(state: Connection): void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
/** How often the page checks that the server still answers while the socket looks open. */
const PROBE_MS = 5000;

export class LiveState {
  incidents = new Map<string, Incident>();
  units = new Map<string, Unit>();
  position: number | null = null;
  connection: Connection = "connecting";
  /** When data was last known to be current (ms since epoch). */
  freshAt = 0;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private probeTimer: number | undefined;
  private listeners: Listener[] = [];
  private stopped = false;

  constructor(private token: () => string | null) {}

  listen(l: Listener) {
    this.listeners.push(l);
  }

  start() {
    void this.connect();
    this.probeTimer = window.setInterval(() => this.probe(), PROBE_MS);
  }

  stop() {
    this.stopped = true;
    window.clearInterval(this.probeTimer);
    this.ws?.close();
  }

  private set(state: Connection) {
    if (this.connection === state) return;
    this.connection = state;
    for (const l of this.listeners) l.onConnection(state);
  }

  /** Fed by the benchmark's synthetic feed instead of the socket: live while it feeds. */
  feedSynthetic() {
    this.synthetic = true;
    this.freshAt = Date.now();
    this.set("live");
  }
  private synthetic = false;

  /** Applies one feed message (also used by the benchmark's synthetic feed). */
  apply(msg: FeedMessage) {
    if (this.synthetic) this.freshAt = Date.now();
    if (msg.type === "snapshot") {
      this.incidents.clear();
      this.units.clear();
      for (const i of msg.incidents) this.incidents.set(i.id, i);
      for (const u of msg.units) this.units.set(u.id, u);
      this.position = msg.position;
      for (const l of this.listeners) l.onChange("snapshot");
    } else if (msg.type === "delta") {
      if (this.position !== null && msg.position <= this.position) return; // already seen
      this.position = msg.position;
      if (msg.incident) {
        this.incidents.set(msg.incident.id, msg.incident);
        for (const l of this.listeners) l.onChange("incident", msg.incident);
      }
      if (msg.unit) {
        this.units.set(msg.unit.id, msg.unit);
        for (const l of this.listeners) l.onChange("unit", msg.unit);
      }
    }
  }

  /** Tries again after the next backoff step. */
  private retry() {
    if (this.connection !== "unauthorized") this.set("lost");
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt++;
    window.setTimeout(() => void this.connect(), delay);
  }

  /**
   * A one-time ticket for the socket: a browser cannot send its token in a header when it
   * opens a websocket, and a token in the address would end up in logs. `null` when the
   * server cannot be reached or refused the token (then the state says which).
   */
  private async ticket(): Promise<string | null> {
    try {
      const res = await fetch("/api/feed/ticket", {
        method: "POST",
        headers: { Authorization: `Bearer ${this.token() ?? ""}` },
        cache: "no-store",
      });
      if (res.status === 401) {
        this.set("unauthorized");
        return null;
      }
      if (!res.ok) return null;
      const body = (await res.json()) as { ticket: string };
      return body.ticket;
    } catch {
      return null;
    }
  }

  private async connect() {
    if (this.stopped) return;
    this.set("connecting");
    const ticket = await this.ticket();
    if (this.stopped) return;
    if (ticket === null) {
      this.retry();
      return;
    }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ ticket });
    if (this.position !== null) params.set("after", String(this.position));
    const ws = new WebSocket(`${proto}//${location.host}/api/feed?${params}`);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg: FeedMessage;
      try {
        msg = JSON.parse(ev.data as string);
      } catch {
        return;
      }
      this.apply(msg);
      this.attempt = 0;
      this.freshAt = Date.now();
      this.set("live");
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!opened) {
        // The upgrade was refused: a bad token is a 401 before the upgrade.
        void this.checkToken();
      }
      if (this.connection === "live") this.freshAt = Date.now();
      this.retry();
    };
  }

  private async checkToken() {
    try {
      const res = await fetch("/api/areas", { headers: { Authorization: `Bearer ${this.token() ?? ""}` } });
      if (res.status === 401) this.set("unauthorized");
    } catch {
      /* server down: stays lost */
    }
  }

  /** A socket can look open while the server is gone; ask the server directly. */
  private async probe() {
    if (this.connection !== "live") return;
    const ctl = new AbortController();
    const t = window.setTimeout(() => ctl.abort(), 3000);
    try {
      const res = await fetch("/healthz", { signal: ctl.signal, cache: "no-store" });
      if (!res.ok) throw new Error();
      this.freshAt = Date.now();
    } catch {
      this.freshAt = Math.min(this.freshAt, Date.now() - PROBE_MS);
      this.set("lost");
      this.ws?.close();
    } finally {
      window.clearTimeout(t);
    }
  }
}
