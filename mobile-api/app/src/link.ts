// The connection to the gateway: hello with the device token and `resume_after`, deliveries
// processed one at a time and remembered with their `seq` before they are acknowledged, and
// the outbox sent in order, one command at a time, each leaving the outbox only on `done` or
// on a refusal that retrying cannot fix.
import * as db from "./db";
import { confirmed, deliver, describe, type Known } from "./model";
import { newKey, parseGateway, RETRYABLE, type Command, type CommandBody, type GatewayMsg } from "./protocol";

export type LinkState =
  | { kind: "connecting" }
  | { kind: "online"; unit: string }
  | { kind: "offline"; retryInS: number }
  | { kind: "ended"; why: string };

export interface LinkEvents {
  changed(known: Known, queue: readonly Command[], inFlight: boolean): void;
  state(s: LinkState): void;
  notice(text: string): void;
  newTask(known: Known): void;
}

const MAX_BACKOFF_S = 15;

export class Link {
  private ws: WebSocket | null = null;
  private welcomed = false;
  private inFlight: string | null = null;
  private stopped = false;
  private attempt = 0;
  private retryTimer: number | undefined;
  private heartbeat: number | undefined;
  private lastHeard = 0;
  private chain: Promise<void> = Promise.resolve();
  known!: Known;
  queue: Command[] = [];

  constructor(private readonly enrolment: db.Enrolment, private readonly on: LinkEvents) {}

  async start(): Promise<void> {
    this.known = await db.loadKnown();
    this.queue = await db.outbox();
    this.emit();
    addEventListener("online", this.wake);
    addEventListener("offline", this.drop);
    this.connect();
  }

  /** Stops for good: the socket closes and nothing reconnects. */
  stop(): void {
    this.stopped = true;
    removeEventListener("online", this.wake);
    removeEventListener("offline", this.drop);
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    this.ws?.close(1000);
    this.ws = null;
  }

  /** Queues a command (kept in IndexedDB first) and sends it when its turn comes. */
  async submit(body: CommandBody): Promise<void> {
    const c = { ...body, key: newKey(), at: new Date().toISOString() } as Command;
    await db.enqueue(c);
    this.queue.push(c);
    this.emit();
    this.pump();
  }

  private emit(): void {
    this.on.changed(this.known, this.queue, this.inFlight !== null);
  }

  private wake = (): void => {
    if (this.stopped || this.ws) return;
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    this.connect();
  };

  /** The phone says it has no network: the socket cannot work, so stop using it. */
  private drop = (): void => {
    this.ws?.close(4100);
  };

  private connect(): void {
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.on.state({ kind: "offline", retryInS: 0 });
      return; // `online` wakes it
    }
    this.on.state({ kind: "connecting" });
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.enrolment.gateway);
    } catch (e) {
      this.on.state({ kind: "ended", why: `The gateway address ${this.enrolment.gateway} is not usable: ${String(e)}. Enrol again.` });
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      const hello: Record<string, unknown> = { type: "hello", v: 1, token: this.enrolment.token };
      if (this.enrolment.unit) hello.unit = this.enrolment.unit;
      if (this.known.seq > 0) hello.resume_after = this.known.seq;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      if (typeof ev.data !== "string") return;
      const m = parseGateway(ev.data);
      if (typeof m === "string") {
        this.on.notice(`The gateway sent a message the app cannot use (${m}); it was ignored.`);
        return;
      }
      this.chain = this.chain.then(() => this.handle(ws, m)).catch((e) => this.on.notice(`Could not store an update on this phone: ${String(e)}`));
    };
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
  }

  private closed(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = null;
    this.welcomed = false;
    this.inFlight = null;
    clearInterval(this.heartbeat);
    this.emit();
    if (this.stopped) return;
    if (code === 4003) {
      this.on.state({ kind: "ended", why: "This phone's enrolment has expired or was revoked. Ask dispatch for a new code and enrol again." });
      return;
    }
    if (code === 4000 || code === 4001) {
      this.on.state({ kind: "ended", why: `The gateway will not talk to this version of the app (${code}${reason ? `: ${reason}` : ""}). Update the app.` });
      return;
    }
    const wait = Math.min(MAX_BACKOFF_S, 2 ** this.attempt) * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.on.state({ kind: "offline", retryInS: Math.round(wait) });
    this.retryTimer = window.setTimeout(() => this.connect(), wait * 1000);
  }

  private async handle(ws: WebSocket, m: GatewayMsg): Promise<void> {
    if (this.ws !== ws) return;
    switch (m.type) {
      case "welcome":
        if (this.enrolment.unit && m.unit !== this.enrolment.unit) {
          this.stop();
          this.on.state({ kind: "ended", why: "The gateway answered for another unit than this phone was enrolled for. Enrol again." });
          return;
        }
        this.welcomed = true;
        this.attempt = 0;
        this.lastHeard = Date.now();
        clearInterval(this.heartbeat);
        this.heartbeat = window.setInterval(() => this.beat(ws, m.heartbeat_secs), m.heartbeat_secs * 1000);
        this.on.state({ kind: "online", unit: m.unit });
        this.pump();
        return;
      case "task":
      case "task_update":
      case "resync": {
        const next = deliver(this.known, m);
        if (!next) return;
        const isNew = m.type === "task" && !this.known.seen.includes(m.task);
        await db.saveKnown(next);
        this.known = next;
        if (this.ws === ws) ws.send(JSON.stringify({ type: "ack", seq: next.seq }));
        this.emit();
        if (isNew) this.on.newTask(next);
        return;
      }
      case "done": {
        const head = this.queue[0];
        if (!head || head.key !== m.key) return;
        const next = confirmed(this.known, head);
        await db.settle(head.key, next);
        this.known = next;
        this.queue.shift();
        this.inFlight = null;
        this.emit();
        this.pump();
        return;
      }
      case "error": {
        const head = this.queue[0];
        if (m.key && head && head.key === m.key) {
          this.inFlight = null;
          if (RETRYABLE.has(m.code)) {
            this.emit();
            window.setTimeout(() => this.pump(), m.retry_after_ms ?? 2000);
            return;
          }
          await db.settle(head.key, this.known);
          this.queue.shift();
          this.emit();
          this.on.notice(`Not done: ${describe(head)}. The gateway refused it: ${m.message}`);
          this.pump();
          return;
        }
        if (m.code !== "auth_failed" && m.code !== "forbidden") this.on.notice(`The gateway reported a problem: ${m.message}`);
        return;
      }
      case "pong":
        return;
    }
  }

  private beat(ws: WebSocket, secs: number): void {
    if (Date.now() - this.lastHeard > secs * 2500) {
      ws.close(4101); // silent too long: a dead connection
      this.closed(ws, 4101, "silent");
      return;
    }
    ws.send(JSON.stringify({ type: "ping", nonce: Date.now() % 1_000_000 }));
  }

  private pump(): void {
    const head = this.queue[0];
    if (!head || !this.ws || !this.welcomed || this.inFlight) return;
    this.inFlight = head.key;
    this.ws.send(JSON.stringify(head));
    this.emit();
  }
}
