export type Priority = "P1" | "P2" | "P3" | "P4" | "P5";
export type UnitStatus =
  | "available" | "dispatched" | "en_route" | "on_scene"
  | "transporting" | "at_hospital" | "returning" | "out_of_service";

export interface LatLon { lat: number; lon: number }
export interface AreaRef { id: string; name: string }
/** A road closure in force (`GET /api/roads/closures`). */
export interface RoadClosure {
  closure_id: string;
  location: LatLon;
  radius_m: number;
  roads: number;
  note?: string;
  by: string;
  since: string;
}

export interface Incident {
  id: string;
  status: string;
  incident_type: string;
  priority: Priority;
  location: LatLon;
  area: AreaRef;
  source: string;
  triaged: boolean;
  reported_at: string;
  updated_at: string;
  units: Record<string, "dispatched" | "en_route" | "on_scene" | "cleared">;
  notes: number;
  disposition?: string;
  ended_at?: string;
  position: number;
}

export interface Unit {
  id: string;
  call_sign: string;
  kind: string;
  agency: string;
  home_station: string;
  capabilities: string[];
  status: UnitStatus;
  status_since: string;
  incident?: string;
  task?: string;
  acknowledged: boolean;
  location?: LatLon;
  located_at?: string;
  heading_deg?: number;
  area?: AreaRef;
  position: number;
}

export type FeedMessage =
  | { type: "snapshot"; position: number | null; incidents: Incident[]; units: Unit[] }
  | { type: "resume"; after: number }
  | { type: "delta"; position: number; incident?: Incident; unit?: Unit };

export const UNIT_STATUSES: UnitStatus[] = [
  "available", "dispatched", "en_route", "on_scene",
  "transporting", "at_hospital", "returning", "out_of_service",
];

export const INCIDENT_TYPES = [
  "structure_fire", "vehicle_fire", "wildland_fire", "fire_alarm", "gas_leak", "hazmat",
  "rescue", "water_rescue", "flooding", "traffic_collision", "medical", "cardiac_arrest",
  "overdose", "assault", "burglary", "robbery", "disturbance", "shots_fired", "other",
];

export const DISPOSITIONS = ["resolved", "false_alarm", "nothing_found", "cancelled", "transferred"];

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
