// What the phone knows of its unit, as the gateway confirmed it, and what the crew may do
// next. Pure functions: the connection and the screen call them.
import type { Command, CommandBody, LatLon, Priority, ResyncMsg, TaskMsg, TaskUpdateMsg, UnitStatus } from "./protocol";

export interface Task {
  task: string; incident: string; assigned_at: string;
  incident_type?: string; priority?: Priority; location?: LatLon; call_back?: string;
  acknowledged: boolean;
}

export interface Known {
  /** The unit's status as last confirmed (undefined: not known yet). */
  status?: UnitStatus;
  task?: Task;
  /** The highest delivery processed; sent as `resume_after`. */
  seq: number;
  /** Tasks seen, newest last, so a repeated `task` is dropped. */
  seen: string[];
  /** A task that was taken away while on screen, to say so. */
  withdrawn?: string;
}

export const EMPTY: Known = { seq: 0, seen: [] };
const SEEN_KEPT = 50;

/** A delivery applied; `null` when it repeats one already processed. */
export function deliver(k: Known, m: TaskMsg | TaskUpdateMsg | ResyncMsg): Known | null {
  if (m.type !== "resync" && m.seq <= k.seq) return null;
  switch (m.type) {
    case "task": {
      const { type: _t, seq: _s, ...rest } = m;
      if (k.seen.includes(m.task)) {
        // Seen already (a resync told of it): keep what is known, add the details.
        const task = k.task?.task === m.task ? { ...k.task, ...rest } : k.task;
        return { ...k, seq: m.seq, task };
      }
      return {
        ...k, seq: m.seq, status: "dispatched", withdrawn: undefined,
        task: { ...rest, acknowledged: false },
        seen: [...k.seen, m.task].slice(-SEEN_KEPT),
      };
    }
    case "task_update": {
      const mine = k.task?.task === m.task ? k.task : undefined;
      if (m.state === "acknowledged") {
        return { ...k, seq: m.seq, task: mine ? { ...mine, acknowledged: true } : k.task };
      }
      if (!mine) return { ...k, seq: m.seq };
      // Declined: the unit is available again; completed: the unit reports where it went.
      const status = m.state === "declined" ? "available" : k.status === "on_scene" || k.status === "at_hospital" ? "returning" : "available";
      return { ...k, seq: m.seq, task: undefined, status };
    }
    case "resync": {
      const s = m.snapshot;
      const a = s.active_task;
      let task: Task | undefined;
      if (a) {
        const old = k.task?.task === a.task ? k.task : undefined;
        task = { ...old, ...a, acknowledged: s.acknowledged };
      }
      const withdrawn = k.task && k.task.task !== task?.task ? k.task.task : undefined;
      const seen = a && !k.seen.includes(a.task) ? [...k.seen, a.task].slice(-SEEN_KEPT) : k.seen;
      return { ...k, seq: m.seq, status: s.status, task, seen, withdrawn };
    }
  }
}

/** A command's effect once the gateway said `done`. */
export function confirmed(k: Known, c: CommandBody): Known {
  switch (c.type) {
    case "acknowledge_task":
      return k.task?.task === c.task ? { ...k, task: { ...k.task, acknowledged: true } } : k;
    case "decline_task":
      return k.task?.task === c.task ? { ...k, task: undefined, status: "available" } : k;
    case "complete_task": {
      if (k.task?.task !== c.task) return k;
      const status = k.status === "on_scene" || k.status === "at_hospital" ? "returning" : "available";
      return { ...k, task: undefined, status };
    }
    case "status":
      if (c.status === "returning" && k.task) return { ...k, task: undefined, status: "returning" };
      return { ...k, status: c.status };
  }
}

/** The state with the queued commands taken as if done: what the buttons follow. */
export function projected(k: Known, queue: readonly Command[]): Known {
  return queue.reduce(confirmed, k);
}

export interface Action { id: string; label: string; body: CommandBody; needsReason?: boolean }

/** The buttons the unit's state allows (backend/core's unit state machine). */
export function actions(k: Known): Action[] {
  const t = k.task;
  const status = (s: Exclude<UnitStatus, "dispatched">, label: string): Action => ({ id: s, label, body: { type: "status", status: s } });
  const out: Action[] = [];
  if (t && k.status === "dispatched" && !t.acknowledged) out.push({ id: "acknowledge", label: "Acknowledge", body: { type: "acknowledge_task", task: t.task } });
  switch (k.status) {
    case "dispatched":
      if (t?.acknowledged) out.push(status("en_route", "En route"), status("on_scene", "On scene"));
      if (t) out.push({ id: "decline", label: "Decline", body: { type: "decline_task", task: t.task }, needsReason: true });
      break;
    case "en_route":
      out.push(status("on_scene", "On scene"));
      if (t) out.push({ id: "stand_down", label: "Stood down", body: { type: "complete_task", task: t.task } });
      break;
    case "on_scene":
      out.push(status("transporting", "Transporting"));
      if (t) out.push({ id: "clear", label: "Clear scene", body: { type: "complete_task", task: t.task } });
      break;
    case "transporting":
      out.push(status("at_hospital", "At hospital"));
      break;
    case "at_hospital":
      if (t) out.push({ id: "clear", label: "Clear hospital", body: { type: "complete_task", task: t.task } });
      break;
    case "returning":
      out.push(status("available", "Available"), status("out_of_service", "Out of service"));
      break;
    case "available":
      out.push(status("out_of_service", "Out of service"));
      break;
    case "out_of_service":
      out.push(status("available", "Available"));
      break;
  }
  return out;
}

export const STATUS_WORDS: Record<UnitStatus, string> = {
  available: "Available", dispatched: "Dispatched", en_route: "En route", on_scene: "On scene",
  transporting: "Transporting", at_hospital: "At hospital", returning: "Returning", out_of_service: "Out of service",
};

export function describe(c: CommandBody): string {
  switch (c.type) {
    case "acknowledge_task": return "Acknowledge";
    case "decline_task": return "Decline";
    case "complete_task": return "Complete task";
    case "status": return STATUS_WORDS[c.status];
  }
}
