// The phone's memory, in IndexedDB: the enrolment, what is known of the unit (with the last
// `seq`), and the outbox of commands not yet confirmed, in the order they were pressed.
import type { Command } from "./protocol";
import { EMPTY, type Known } from "./model";

export interface Enrolment { token: string; unit?: string; gateway: string }

const DB = "muster-responder";
let opened: Promise<IDBDatabase> | null = null;

function open(): Promise<IDBDatabase> {
  opened ??= new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => {
      r.result.createObjectStore("kv");
      r.result.createObjectStore("outbox", { keyPath: "n", autoIncrement: true });
    };
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error("IndexedDB would not open"));
  });
  return opened;
}

function done(t: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    t.oncomplete = () => resolve();
    t.onerror = () => reject(t.error ?? new Error("IndexedDB write failed"));
    t.onabort = () => reject(t.error ?? new Error("IndexedDB write aborted"));
  });
}

function get<T>(store: IDBObjectStore, key: IDBValidKey): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const r = store.get(key);
    r.onsuccess = () => resolve(r.result as T | undefined);
    r.onerror = () => reject(r.error);
  });
}

export async function loadEnrolment(): Promise<Enrolment | undefined> {
  const db = await open();
  return get<Enrolment>(db.transaction("kv").objectStore("kv"), "enrolment");
}

export async function saveEnrolment(e: Enrolment): Promise<void> {
  const db = await open();
  const t = db.transaction(["kv", "outbox"], "readwrite");
  t.objectStore("kv").put(e, "enrolment");
  t.objectStore("kv").put(EMPTY, "known");
  t.objectStore("outbox").clear();
  await done(t);
}

/** Logging out: the token, what was known and what was waiting are all forgotten. */
export async function forget(): Promise<void> {
  const db = await open();
  const t = db.transaction(["kv", "outbox"], "readwrite");
  t.objectStore("kv").clear();
  t.objectStore("outbox").clear();
  await done(t);
}

export async function loadKnown(): Promise<Known> {
  const db = await open();
  return (await get<Known>(db.transaction("kv").objectStore("kv"), "known")) ?? EMPTY;
}

export async function saveKnown(k: Known): Promise<void> {
  const db = await open();
  const t = db.transaction("kv", "readwrite");
  t.objectStore("kv").put(k, "known");
  await done(t);
}

type Stored = Command & { n?: number };

export async function outbox(): Promise<Command[]> {
  const db = await open();
  const store = db.transaction("outbox").objectStore("outbox");
  return new Promise((resolve, reject) => {
    const r = store.getAll();
    r.onsuccess = () => resolve((r.result as Stored[]).map(({ n: _n, ...c }) => c as Command));
    r.onerror = () => reject(r.error);
  });
}

export async function enqueue(c: Command): Promise<void> {
  const db = await open();
  const t = db.transaction("outbox", "readwrite");
  t.objectStore("outbox").add({ ...c });
  await done(t);
}

/** Removes the command with `key` and, in the same write, saves what is known after it. */
export async function settle(key: string, known: Known): Promise<void> {
  const db = await open();
  const t = db.transaction(["outbox", "kv"], "readwrite");
  const box = t.objectStore("outbox");
  const all = await new Promise<Stored[]>((resolve, reject) => {
    const r = box.getAll();
    r.onsuccess = () => resolve(r.result as Stored[]);
    r.onerror = () => reject(r.error);
  });
  for (const c of all) if (c.key === key && c.n !== undefined) box.delete(c.n);
  t.objectStore("kv").put(known, "known");
  await done(t);
}
