/**
 * The API's types. They are generated from the server's OpenAPI document (`api.gen.ts`,
 * written by `scripts/api-types.mjs` from `openapi.json` at every build), so a field renamed
 * in the server breaks this build where the field is read.
 */
import type {
  AreaRef,
  ClosureInForce,
  Disposition,
  IncidentRow,
  IncidentType,
  LatLon,
  Priority,
  UnitRow,
  UnitStatus,
} from "./api.gen";

export type { AreaRef, LatLon, Priority, UnitStatus };
/** One incident on the board (the feed's and `GET /api/incidents`'s rows). */
export type Incident = IncidentRow;
/** One unit on the board. */
export type Unit = UnitRow;
/** A road closure in force (`GET /api/roads/closures`). */
export type RoadClosure = ClosureInForce;

/** The feed's messages (the websocket is outside the document; its rows are not). */
export type FeedMessage =
  | { type: "snapshot"; position: number | null; incidents: Incident[]; units: Unit[] }
  | { type: "resume"; after: number }
  | { type: "delta"; position: number; incident?: Incident; unit?: Unit };

export const UNIT_STATUSES: UnitStatus[] = [
  "available", "dispatched", "en_route", "on_scene",
  "transporting", "at_hospital", "returning", "out_of_service",
];

export const INCIDENT_TYPES: IncidentType[] = [
  "structure_fire", "vehicle_fire", "wildland_fire", "fire_alarm", "gas_leak", "hazmat",
  "rescue", "water_rescue", "flooding", "traffic_collision", "medical", "cardiac_arrest",
  "overdose", "assault", "burglary", "robbery", "disturbance", "shots_fired", "other",
];

export const DISPOSITIONS: Disposition[] = ["resolved", "false_alarm", "nothing_found", "cancelled", "transferred"];

/** Okabe–Ito colours; every status also has its own shape and a text label. */
export const STATUS_STYLE: Record<UnitStatus, { colour: string; shape: string; label: string; short: string }> = {
  available: { colour: "#009E73", shape: "circle", label: "Available", short: "AV" },
  dispatched: { colour: "#F0E442", shape: "triangle", label: "Dispatched", short: "DS" },
  en_route: { colour: "#E69F00", shape: "arrow", label: "En route", short: "ER" },
  on_scene: { colour: "#D55E00", shape: "square", label: "On scene", short: "OS" },
  transporting: { colour: "#CC79A7", shape: "diamond", label: "Transporting", short: "TR" },
  at_hospital: { colour: "#56B4E9", shape: "plus", label: "At hospital", short: "AH" },
  returning: { colour: "#7FB8E0", shape: "down", label: "Returning", short: "RT" },
  out_of_service: { colour: "#9A9A9A", shape: "cross", label: "Out of service", short: "OOS" },
};

export const PRIORITY_COLOUR: Record<Priority, string> = {
  P1: "#D55E00",
  P2: "#E69F00",
  P3: "#F0E442",
  P4: "#56B4E9",
  P5: "#BBBBBB",
};

/** Timers: how long before each wait is overdue, in seconds. */
export const OVERDUE = {
  /** A dispatched unit that has not acknowledged its task. */
  notAcknowledgedS: 60,
  /** A dispatched unit (acknowledged) not yet en route. */
  notEnRouteS: 120,
  /** A unit on scene for longer than this. */
  onSceneS: 45 * 60,
  /** An open incident with no unit, by priority. */
  waitingS: { P1: 60, P2: 120, P3: 300, P4: 900, P5: 1800 } as Record<Priority, number>,
};
