// Protocol v1 (mobile-api/PROTOCOL.md) as the app sees it: what the gateway sends, checked
// field by field before anything is believed, and the commands the app sends.

export type Priority = "P1" | "P2" | "P3" | "P4" | "P5";
export type UnitStatus =
  | "available" | "dispatched" | "en_route" | "on_scene" | "transporting"
  | "at_hospital" | "returning" | "out_of_service";
export interface LatLon { lat: number; lon: number }

export interface TaskMsg {
  type: "task"; seq: number; task: string; incident: string; assigned_at: string;
  incident_type?: string; priority?: Priority; location?: LatLon; call_back?: string;
}
export interface TaskUpdateMsg {
  type: "task_update"; seq: number; task: string; incident: string;
  state: "acknowledged" | "declined" | "completed"; at: string;
}
export interface ResyncMsg {
  type: "resync"; seq: number;
  snapshot: {
    status?: UnitStatus;
    active_task?: { task: string; incident: string; assigned_at: string; priority?: Priority };
    acknowledged: boolean;
  };
}
export interface WelcomeMsg { type: "welcome"; v: 1; unit: string; session: string; heartbeat_secs: number }
export interface DoneMsg { type: "done"; key: string; outcome: "applied" | "duplicate" | "unchanged"; incident?: string }
export interface ErrorMsg { type: "error"; code: string; message: string; key?: string; retry_after_ms?: number }
export interface PongMsg { type: "pong"; nonce: number }
export type GatewayMsg = WelcomeMsg | TaskMsg | TaskUpdateMsg | ResyncMsg | DoneMsg | ErrorMsg | PongMsg;

/** What the device sends; `key` and `at` are added when the command is queued. */
export type CommandBody =
  | { type: "acknowledge_task"; task: string }
  | { type: "decline_task"; task: string; reason?: string }
  | { type: "complete_task"; task: string }
  | { type: "status"; status: Exclude<UnitStatus, "dispatched"> };
export type Command = CommandBody & { key: string; at: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const STATUSES: readonly string[] = [
  "available", "dispatched", "en_route", "on_scene", "transporting", "at_hospital", "returning", "out_of_service",
];
const PHONE = /^\+?[0-9][0-9 ()-]{2,30}$/;

export const isUuid = (v: unknown): v is string => typeof v === "string" && UUID.test(v);
const isSeq = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isTime = (v: unknown): v is string => typeof v === "string" && v.length <= 40 && !Number.isNaN(Date.parse(v));
const isPriority = (v: unknown): v is Priority => typeof v === "string" && /^P[1-5]$/.test(v);
const isStatus = (v: unknown): v is UnitStatus => typeof v === "string" && STATUSES.includes(v);
const isText = (v: unknown, max: number): v is string => typeof v === "string" && v.length <= max;
function isLatLon(v: unknown): v is LatLon {
  if (typeof v !== "object" || v === null) return false;
  const { lat, lon } = v as Record<string, unknown>;
  return typeof lat === "number" && typeof lon === "number" && Number.isFinite(lat) && Number.isFinite(lon)
    && Math.abs(lat) <= 90 && Math.abs(lon) <= 180;
}
/** A call-back number fit for a `tel:` link, else nothing. */
export function phone(v: unknown): string | undefined {
  return typeof v === "string" && PHONE.test(v) ? v : undefined;
}

/** One frame from the gateway, checked; a string saying what is wrong when it is not usable. */
export function parseGateway(text: string): GatewayMsg | string {
  let m: unknown;
  try { m = JSON.parse(text); } catch { return "not JSON"; }
  if (typeof m !== "object" || m === null || Array.isArray(m)) return "not an object";
  const o = m as Record<string, unknown>;
  switch (o.type) {
    case "welcome":
      if (o.v !== 1 || !isUuid(o.unit) || !isUuid(o.session)) return "welcome without v 1, unit or session";
      return { type: "welcome", v: 1, unit: o.unit, session: o.session, heartbeat_secs: Number(o.heartbeat_secs) || 10 };
    case "task": {
      if (!isSeq(o.seq) || !isUuid(o.task) || !isUuid(o.incident) || !isTime(o.assigned_at)) return "task without seq, ids or time";
      const t: TaskMsg = { type: "task", seq: o.seq, task: o.task, incident: o.incident, assigned_at: o.assigned_at };
      if (typeof o.incident_type === "string" && /^[a-z0-9_]{1,64}$/.test(o.incident_type)) t.incident_type = o.incident_type;
      if (isPriority(o.priority)) t.priority = o.priority;
      if (isLatLon(o.location)) t.location = { lat: o.location.lat, lon: o.location.lon };
      const cb = phone(o.call_back);
      if (cb) t.call_back = cb;
      return t;
    }
    case "task_update":
      if (!isSeq(o.seq) || !isUuid(o.task) || !isUuid(o.incident) || !isTime(o.at)) return "task_update without seq, ids or time";
      if (o.state !== "acknowledged" && o.state !== "declined" && o.state !== "completed") return "task_update with an unknown state";
      return { type: "task_update", seq: o.seq, task: o.task, incident: o.incident, state: o.state, at: o.at };
    case "resync": {
      const s = o.snapshot as Record<string, unknown> | null;
      if (!isSeq(o.seq) || typeof s !== "object" || s === null) return "resync without seq or snapshot";
      const snapshot: ResyncMsg["snapshot"] = { acknowledged: s.acknowledged === true };
      if (s.status !== undefined) {
        if (!isStatus(s.status)) return "resync with an unknown status";
        snapshot.status = s.status;
      }
      if (s.active_task !== undefined && s.active_task !== null) {
        const a = s.active_task as Record<string, unknown>;
        if (!isUuid(a.task) || !isUuid(a.incident) || !isTime(a.assigned_at)) return "resync with a malformed task";
        snapshot.active_task = { task: a.task, incident: a.incident, assigned_at: a.assigned_at };
        if (isPriority(a.priority)) snapshot.active_task.priority = a.priority;
      }
      return { type: "resync", seq: o.seq, snapshot };
    }
    case "done":
      if (!isText(o.key, 128)) return "done without key";
      if (o.outcome !== "applied" && o.outcome !== "duplicate" && o.outcome !== "unchanged") return "done with an unknown outcome";
      return { type: "done", key: o.key, outcome: o.outcome, ...(isUuid(o.incident) ? { incident: o.incident } : {}) };
    case "error": {
      if (!isText(o.code, 64) || !isText(o.message, 2000)) return "error without code or message";
      const e: ErrorMsg = { type: "error", code: o.code, message: o.message };
      if (isText(o.key, 128)) e.key = o.key;
      if (isSeq(o.retry_after_ms)) e.retry_after_ms = o.retry_after_ms;
      return e;
    }
    case "pong":
      return { type: "pong", nonce: Number(o.nonce) };
    default:
      return typeof o.type === "string" ? `unknown type ${o.type.slice(0, 40)}` : "no type";
  }
}

/** Errors a retry with the same key may get past (PROTOCOL.md, "error"). */
export const RETRYABLE = new Set(["conflict", "rate_limited", "internal"]);

export function newKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
