// Browser test of the responder app against the real `muster` server and its mobile
// gateway, in Debian's chromium driven by playwright-core, with a phone's viewport and touch.
// Each step waits on a condition with a deadline; no sleeps. Screenshots go to
// test-artifacts/responder/ at the repository root.
//
//   node tests/browser.mjs [--muster <path to the muster binary>]
//
// Steps: a token issued by the operator API enrols the phone through an enrolment link ->
// a task dispatched through the operator API raises the full-screen alert -> acknowledge ->
// en route -> the operator API shows the unit en route -> the network is cut, three buttons
// pressed and shown as waiting, the operator API still shows en route -> a reload with no
// network opens the app from its cache with the task -> the network is restored and the
// three arrive in order, once -> a revoked token ends the session with a message in words.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const args = process.argv.slice(2);
const musterBin = args.includes("--muster") ? args[args.indexOf("--muster") + 1] : path.join(root, "target/debug/muster");
const artifacts = path.join(root, "test-artifacts/responder");
mkdirSync(artifacts, { recursive: true });
const STEP_MS = 30_000;
const CHROMIUM_ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

/** Waits until `check` returns a truthy value, or fails naming `what` after `ms`. */
async function until(what, check, ms = STEP_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100)); // polling a condition, not a wait for an effect
  }
}

let server = null;
let browser = null;
const dataDir = mkdtempSync(path.join(tmpdir(), "muster-responder-test-"));

async function startServer(port, gatewayPort) {
  const child = spawn(musterBin, ["serve", "--demo", "--no-drill", "--data-dir", dataDir, "--bind", `127.0.0.1:${port}`], {
    env: {
      ...process.env, MUSTER_WEB_BUILD: "0", MUSTER_RESPONDER_DIST: path.join(here, "../dist"),
      MUSTER_GATEWAY_BIND: `127.0.0.1:${gatewayPort}`,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  server = { child, exited, out: () => out };
  const found = await until("muster to get ready", async () => {
    if (child.exitCode !== null) throw new Error(`muster exited early:\n${out}`);
    const r = await fetch(`http://127.0.0.1:${port}/readyz`);
    const token = /demo token operator\s+(\S+)/.exec(out);
    const unit = /demo device (\S+)\s+unit (\S+) token/.exec(out);
    return r.ok && token && unit && { token: token[1], callSign: unit[1], unit: unit[2] };
  }, 60_000);
  return found;
}

async function stopServer() {
  if (!server) return;
  server.child.kill("SIGTERM");
  await server.exited;
  server = null;
}

async function main() {
  const port = await freePort();
  const gatewayPort = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const { token: operator, unit, callSign } = await startServer(port, gatewayPort);
  const api = async (method, route, body) => {
    const r = await fetch(`${base}${route}`, {
      method,
      headers: { authorization: `Bearer ${operator}`, "content-type": "application/json", "idempotency-key": randomUUID() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${route}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const unitStatus = async () => (await api("GET", `/api/units/${unit}`)).status;

  // The app is served with the gateway in its policy, and a missing file is a clear 404.
  const page0 = await fetch(`${base}/responder/`);
  const csp = page0.headers.get("content-security-policy") ?? "";
  if (page0.status !== 200 || !csp.includes(`connect-src 'self' ws://127.0.0.1:${gatewayPort};`)) {
    throw new Error(`/responder/ answered ${page0.status} with policy ${csp}`);
  }

  const enrolment = await api("POST", `/api/units/${unit}/device-token`, {});
  if (enrolment.gateway_port !== gatewayPort) throw new Error(`gateway_port ${enrolment.gateway_port}, expected ${gatewayPort}`);

  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  // The browser's own reports of a socket failing with no network, or of vibration before
  // the first tap, are expected; any other console error fails the test.
  const expected = /^WebSocket connection to .* failed|^Blocked call to navigator\.vibrate/;
  page.on("console", (m) => { if (m.type() === "error" && !expected.test(m.text())) problems.push(m.text()); });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `${name}.png`) });
  const text = (sel) => page.locator(sel).innerText();

  // Bad input first: a pasted token that is not one gets a message in words.
  await page.goto(`${base}/responder/`);
  await page.locator("#token").fill("not a token");
  await page.locator("#enrol").tap();
  await until("the bad-token message", async () => /not a device token/.test(await text("#enrol-error")));

  // Enrol through an enrolment link (fragment: the token never goes to the server in a URL).
  const fragment = new URLSearchParams({ token: enrolment.token, unit, gateway: `ws://127.0.0.1:${gatewayPort}` });
  await page.goto(`${base}/responder/#${fragment}`);
  await until("the app to connect", async () => (await text("#connection")) === "Connected");
  if (page.url().includes("token")) throw new Error(`the token stayed in the address: ${page.url()}`);
  await until("the service worker to control the page", () => page.evaluate(() => navigator.serviceWorker.controller !== null));
  await shot("1-enrolled");

  // A task dispatched by the operator appears and alerts.
  const incident = await api("POST", "/api/incidents", {
    location: { lat: 60.1699, lon: 24.9384 }, incident_type: "medical", priority: "P2",
    caller: { name: "A Caller", call_back: "+358401234567" },
  });
  await api("POST", `/api/incidents/${incident.incident_id}/tasks`, { unit_id: unit });
  await until("the new-task alert", async () => /NEW TASK[\s\S]*Medical[\s\S]*P2/.test(await text("#alert")));
  await shot("2-alert");
  await page.locator("#alert-ack").tap();
  await until("the acknowledgement to be sent", async () => (await text("#outbox")) === "Everything is sent." && (await page.locator("[data-action=en_route]").count()) === 1);
  const tel = await page.locator("#call-back").getAttribute("href");
  if (tel !== "tel:+358401234567") throw new Error(`call-back link ${tel}`);
  await page.locator("[data-action=en_route]").tap();
  await until("the operator to see the unit en route", async () => (await unitStatus()) === "en_route");
  await until("the app to show en route", async () => (await text("#status-confirmed")) === "En route");
  await shot("3-en-route");

  // No network: three presses wait, plainly, and nothing reaches the server.
  await context.setOffline(true);
  await until("the app to see no signal", async () => /No signal/.test(await text("#connection")));
  for (const action of ["on_scene", "transporting", "at_hospital"]) {
    await page.locator(`[data-action=${action}]`).tap();
    await until(`${action} queued`, async () => (await page.locator("#pending li").count()) > 0 && (await page.locator(`[data-action=${action}]`).count()) === 0);
  }
  await until("three updates shown waiting", async () => (await text("#outbox")) === "3 updates waiting for signal");
  if ((await text("#status-confirmed")) !== "En route") throw new Error("the app shows a status as confirmed that was not sent");
  if ((await unitStatus()) !== "en_route") throw new Error("an update reached the server while the phone was offline");
  await shot("4-offline-queued");

  // A reload with no network: the app opens from its cache and still has the task and queue.
  await page.reload();
  await until("the app from cache with the task", async () => (await text("#task-type")) === "Medical" && (await text("#outbox")) === "3 updates waiting for signal");
  await shot("5-offline-reloaded");

  // Back online: the three arrive, in order, once.
  await context.setOffline(false);
  await until("the operator to see the unit at hospital", async () => (await unitStatus()) === "at_hospital");
  await until("the outbox to empty", async () => (await text("#outbox")) === "Everything is sent.");
  if ((await page.locator(".notice").count()) !== 0) throw new Error(`refusals: ${await text("#notices")}`);
  const detail = await api("GET", `/api/incidents/${incident.incident_id}`);
  const mine = detail.units.find((u) => u.unit === unit);
  if (!mine?.en_route_at || !mine.on_scene_at || !(Date.parse(mine.en_route_at) <= Date.parse(mine.on_scene_at))) {
    throw new Error(`the incident's time points for the unit are not en route then on scene: ${JSON.stringify(mine)}`);
  }
  await shot("6-back-online");

  // Revoked: the session ends with words, and no reconnecting.
  await api("POST", `/api/units/${unit}/device-token/revoke`, {});
  await until("the revocation message", async () => /expired or was revoked/.test(await text("#connection")));
  await shot("7-revoked");

  // Logging out forgets the token.
  page.once("dialog", (d) => d.accept());
  await page.locator("#logout").tap();
  await until("the enrolment screen", async () => /Logged out/.test(await text("#enrol-error")));
  if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  console.log(`responder app: all steps passed (unit ${callSign}); screenshots in ${artifacts}`);
}

let failed = false;
try {
  await main();
} catch (e) {
  failed = true;
  console.error(e);
  if (server) console.error(`--- muster output ---\n${server.out().slice(-4000)}`);
} finally {
  await browser?.close().catch(() => {});
  await stopServer();
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
