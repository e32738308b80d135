// Browser tests of the wall display against the real `muster` server, in Debian's
// chromium driven by playwright-core. Each step waits on a condition with a timeout; no
// sleeps. Screenshots go to test-artifacts/web/ at the repository root.
//
//   node tests/browser.mjs [--muster <path to the muster binary>]
//
// Steps: the page loads with the base map and the demo units -> a hotline call entered in
// the form appears in the queue and on the map -> a bad location shows the API's error next
// to the field -> accepting the recommendation turns the unit dispatched -> the server stops
// and the page says its data is stale -> the server starts again on the same port and data
// and the page recovers by itself (and sees a change made while it was away).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const args = process.argv.slice(2);
const musterBin = args.includes("--muster") ? args[args.indexOf("--muster") + 1] : path.join(root, "target/debug/muster");
const artifacts = path.join(root, "test-artifacts/web");
mkdirSync(artifacts, { recursive: true });
// The demo operator's token, as `muster serve --demo` prints it.
let TOKEN = null;
const STEP_MS = 30_000;

export const CHROMIUM_ARGS = [
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

let server = null;
/** Starts `muster serve`: the first time with `--demo --no-drill` (demo units, the operator's
 * token printed); a restart on the same data directory without `--demo`, its operator holding
 * the token the page already has. */
async function startServer(dataDir, port) {
  const restart = TOKEN !== null;
  const demo = restart ? [] : ["--demo", "--no-drill"];
  const users = restart ? { MUSTER_USERS: `wall-test:operator:${TOKEN}` } : {};
  const child = spawn(musterBin, ["serve", ...demo, "--data-dir", dataDir, "--bind", `127.0.0.1:${port}`], {
    env: { ...process.env, ...users, MUSTER_WEB_BUILD: "0", MUSTER_WEB_DIST: path.join(here, "../dist"), MUSTER_GATEWAY_BIND: "off" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`muster exited early:\n${out}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      const printed = /demo token operator\s+(\S+)/.exec(out);
      if (r.ok && (restart || printed)) {
        if (!restart) TOKEN = printed[1];
        break;
      }
    } catch {}
    if (Date.now() > deadline) throw new Error(`muster did not get ready:\n${out}`);
    await new Promise((r) => setTimeout(r, 100)); // polling the server's readiness, not a wait for an effect
  }
  server = { child, exited, out: () => out };
  return server;
}

async function stopServer() {
  if (!server) return;
  const s = server;
  server = null;
  s.child.kill("SIGTERM");
  await s.exited;
}

async function api(port, method, p, body) {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json", "Idempotency-Key": `wall-test-${Math.random().toString(36).slice(2)}` },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

let failures = 0;
async function step(name, f) {
  process.stdout.write(`- ${name} ... `);
  try {
    await f();
    console.log("ok");
  } catch (e) {
    failures++;
    console.log("FAILED");
    console.log(String(e?.stack ?? e).split("\n").slice(0, 8).map((l) => "    " + l).join("\n"));
    throw e;
  }
}

async function main() {
  if (!existsSync(path.join(here, "../dist/index.html"))) throw new Error("build the app first: npm run build");
  if (!existsSync(musterBin)) throw new Error(`no muster binary at ${musterBin}: cargo build --bin muster`);
  const dataDir = mkdtempSync(path.join(tmpdir(), "muster-wall-"));
  const profile = mkdtempSync(path.join(tmpdir(), "muster-chromium-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  let browser = null;
  try {
    await startServer(dataDir, port);
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1920, height: 1080 },
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(STEP_MS);
    const consoleErrors = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    // The server's content security policy must not block anything the page does.
    page.on("console", (m) => {
      const text = m.text();
      if (m.type() === "error" && /Content Security Policy/i.test(text) && !consoleErrors.includes(text)) consoleErrors.push(text);
    });

    await step("the page loads live, with the base map and the demo units", async () => {
      await page.goto(`${base}/#token=${TOKEN}`);
      await page.waitForSelector('#conn[data-state="live"]');
      await page.waitForSelector('body[data-city="loaded"]');
      await page.waitForSelector("tr.unit-row");
      const units = await page.locator("tr.unit-row").count();
      if (units < 1) throw new Error("no unit in the unit board");
      if (!(await page.locator(".leaflet-control-attribution").innerText()).includes("OpenStreetMap")) throw new Error("no OpenStreetMap attribution on the map");
      await page.screenshot({ path: path.join(artifacts, "01-live.png") });
    });

    await step("a road closure is drawn on the map until it is reopened", async () => {
      const closed = await api(port, "POST", "/api/roads/closures", { location: { lat: 60.1699, lon: 24.9384 }, radius_m: 100, note: "wall test" });
      await page.waitForSelector('body[data-closures="1"]');
      await api(port, "POST", `/api/roads/closures/${closed.closure_id}/reopen`, {});
      await page.waitForSelector('body[data-closures="0"]');
    });

    await step("a location outside the world shows the API's error next to the location", async () => {
      await page.click("#toggle-console");
      await page.fill("#f-lat", "123");
      await page.fill("#f-lon", "24.94");
      await page.click("#create");
      const err = page.locator('#new-incident .err[data-for="location"]');
      await err.filter({ hasText: /\S/ }).waitFor();
      const text = await err.innerText();
      if (!/lat/i.test(text)) throw new Error(`the error does not say what is wrong: ${text}`);
      await page.screenshot({ path: path.join(artifacts, "02-form-error.png") });
    });

    let incidentId = null;
    // Wall-clock moments bracketing the incident's open life, for time travel.
    let callEnteredAt = 0, closedAt = 0;
    await step("a call entered in the form appears in the queue and on the map", async () => {
      await page.fill("#f-address", "Mannerheimintie 5");
      await page.click("#lookup");
      await page.waitForFunction(() => document.querySelector("#f-lat").value.startsWith("60.1"));
      await page.selectOption("#f-type", "structure_fire");
      await page.selectOption("#f-priority", "P1");
      await page.click("#create");
      await page.waitForSelector("[data-selected-incident]");
      incidentId = await page.getAttribute("[data-selected-incident]", "data-selected-incident");
      await page.waitForSelector(`tr.incident-row[data-incident="${incidentId}"]`);
      callEnteredAt = Date.now();
      const onMap = await page.evaluate((id) => window.muster.map["incidents"].has(id), incidentId);
      if (!onMap) throw new Error("the incident is not on the map layer");
      // It is drawn (on the next animation frame) where it is, as a P1 incident: a ring of the
      // P1 colour around its point (at least three of the four compass points, as a unit
      // may cover one) with the dark fill inside it, below the priority written at its centre.
      const ringAt = async (id) => {
        await new Promise((r) => requestAnimationFrame(r));
        const m = window.muster.map;
        const i = m["incidents"].get(id);
        const p = m.map.latLngToContainerPoint([i.location.lat, i.location.lon]);
        const c = document.querySelector(".live-layer");
        const dpr = window.devicePixelRatio || 1;
        const scale = Math.max(1, Math.min(2.2, m.map.getSize().y / 900));
        const px = (dx, dy) => Array.from(c.getContext("2d").getImageData(Math.round((p.x + dx) * dpr), Math.round((p.y + dy) * dpr), 1, 1).data);
        const like = (d, rgb) => d[3] > 200 && rgb.every((v, k) => Math.abs(d[k] - v) <= 40);
        const r = 13 * scale;
        const ring = [[r, 0], [-r, 0], [0, r], [0, -r]].map(([dx, dy]) => px(dx, dy));
        const fill = px(0, 8 * scale);
        const p1 = [0xd5, 0x5e, 0x00];
        return { ok: ring.filter((d) => like(d, p1)).length >= 3 && like(fill, [0x11, 0x11, 0x11]), ring, fill };
      };
      const deadline = Date.now() + STEP_MS;
      for (;;) {
        const seen = await page.evaluate(ringAt, incidentId);
        if (seen.ok) break;
        if (Date.now() > deadline) throw new Error(`no P1 ring at the incident's point: ring pixels ${JSON.stringify(seen.ring)}, fill ${JSON.stringify(seen.fill)}`);
      }
      await page.screenshot({ path: path.join(artifacts, "03-incident-created.png") });
    });

    let unitId = null;
    await step("accepting the recommendation turns the unit dispatched", async () => {
      await page.waitForSelector("#accept:not([disabled])");
      unitId = await page.getAttribute('#rec-form input[name="unit"]:checked', "value");
      await page.click("#accept");
      await page.waitForSelector(`tr.unit-row[data-unit="${unitId}"][data-status="dispatched"]`);
      await page.waitForSelector(`tr.incident-row[data-incident="${incidentId}"] .chip`);
      const status = await page.evaluate((id) => window.muster.live.units.get(id).status, unitId);
      if (status !== "dispatched") throw new Error(`unit is ${status}`);
      await page.screenshot({ path: path.join(artifacts, "04-dispatched.png") });
    });

    await step("when the server stops the page says plainly that its data is stale", async () => {
      await stopServer();
      await page.waitForSelector("#stale-banner:not([hidden])");
      await page.waitForSelector('#conn[data-state="lost"]');
      const text = await page.innerText("#stale-banner");
      if (!/STALE/.test(text)) throw new Error(`banner says: ${text}`);
      await page.screenshot({ path: path.join(artifacts, "05-stale.png") });
    });

    await step("after a restart the page recovers by itself and catches up", async () => {
      // Offline first: the connection is lost and the banner up. A mark on this document
      // tells a recovery from a reload of the page.
      const before = await page.evaluate(() => {
        window.__sameDocument = true;
        return { state: window.muster.live.connection, position: window.muster.live.position, stale: !document.querySelector("#stale-banner").hidden };
      });
      if (before.state !== "lost" || !before.stale) throw new Error(`the page is not offline before the restart: ${JSON.stringify(before)}`);
      await startServer(dataDir, port);
      // A change made while the page was away must reach it.
      await api(port, "POST", `/api/units/${unitId}/status`, { status: "en_route" });
      await page.waitForSelector('#conn[data-state="live"]', { timeout: 60_000 });
      await page.waitForSelector("#stale-banner", { state: "hidden" });
      await page.waitForSelector(`tr.unit-row[data-unit="${unitId}"][data-status="en_route"]`);
      const after = await page.evaluate(() => ({ same: window.__sameDocument === true, position: window.muster.live.position }));
      if (!after.same) throw new Error("the page was reloaded: it did not recover by itself");
      if (!(after.position > before.position)) throw new Error(`the page's log position did not move on: ${before.position} -> ${after.position}`);
      await page.screenshot({ path: path.join(artifacts, "06-recovered.png") });
    });

    await step("changing a unit's status from the console", async () => {
      await page.click(`tr.unit-row[data-unit="${unitId}"]`);
      await page.selectOption("#f-status", "on_scene");
      await page.click("#set-status");
      await page.waitForSelector(`tr.unit-row[data-unit="${unitId}"][data-status="on_scene"]`);
    });

    await step("today's response times count the call and its unit on scene", async () => {
      await page.waitForSelector('[data-figure="response"] >> text=/1 of 1 calls/');
    });

    await step("closing the incident takes it out of the queue", async () => {
      await page.click(`tr.incident-row[data-incident="${incidentId}"]`);
      await page.selectOption("#f-disposition", "resolved");
      closedAt = Date.now();
      await page.click("#close");
      await page.waitForSelector(`tr.incident-row[data-incident="${incidentId}"]`, { state: "detached" });
    });

    await step("time travel shows the city before the call, plays forward, then live again", async () => {
      // The live queue is empty now (the incident was closed). Between the call and its
      // close, the past shows it open: the page shows the moment asked for, not the live
      // state.
      const slide = async (at) => {
        const first = Date.parse((await api(port, "GET", "/api/wall/timeline")).first.at);
        await page.evaluate(([at, first]) => {
          // The page maps the range over the log's first event to now, as of this input.
          const r = document.querySelector("#tt-range");
          r.value = String(Math.max(1, Math.min(999, Math.round(((at - first) / (Date.now() - first)) * 1000))));
          r.dispatchEvent(new Event("input"));
        }, [at, first]);
      };
      await slide((callEnteredAt + closedAt) / 2);
      await page.waitForSelector("#history-banner:not([hidden])");
      await page.waitForSelector(`tr.incident-row[data-incident="${incidentId}"]`);
      // Before the call: the units, and no incident.
      await page.evaluate(() => {
        const r = document.querySelector("#tt-range");
        r.value = "1";
        r.dispatchEvent(new Event("input"));
      });
      await page.waitForSelector(`tr.incident-row[data-incident="${incidentId}"]`, { state: "detached" });
      const before = await page.evaluate(() => ({ incidents: document.querySelectorAll("tr.incident-row").length, units: document.querySelectorAll("tr.unit-row").length }));
      if (before.incidents !== 0 || before.units < 1) throw new Error(`before the call the page shows ${JSON.stringify(before)}`);
      await page.screenshot({ path: path.join(artifacts, "07-history.png") });
      // Play forward at 1x from near the log's start: the moment shown advances.
      await page.selectOption("#tt-speed", "1");
      await page.click("#tt-play");
      const from = await page.innerText("#tt-label");
      await page.waitForSelector("#history-banner >> text=/playing/");
      await page.waitForFunction((f) => document.querySelector("#tt-label").textContent !== f, from);
      await page.click("#tt-live");
      await page.waitForSelector("#history-banner", { state: "hidden" });
    });

    await step("a 4K wall shows the same page, scaled", async () => {
      const measure = () => page.evaluate(() => ({
        font: parseFloat(getComputedStyle(document.documentElement).fontSize),
        row: document.querySelector("tr.unit-row").getBoundingClientRect().height,
        units: document.querySelectorAll("tr.unit-row").length,
        canvas: document.querySelector(".live-layer").getBoundingClientRect().width,
        map: document.querySelector("#map").getBoundingClientRect().width,
        overflows: document.documentElement.scrollWidth > window.innerWidth || document.documentElement.scrollHeight > window.innerHeight,
      }));
      const hd = await measure();
      await page.setViewportSize({ width: 3840, height: 2160 });
      await page.waitForSelector('#conn[data-state="live"]');
      // The map's drawing layer follows the new size.
      await page.waitForFunction((w) => document.querySelector(".live-layer").getBoundingClientRect().width > 1.9 * w, hd.canvas).catch(() => {});
      const uhd = await measure();
      const bad = [];
      if (uhd.font < 1.5 * hd.font) bad.push(`text ${hd.font}px -> ${uhd.font}px`);
      if (uhd.row < 1.5 * hd.row) bad.push(`unit rows ${hd.row}px -> ${uhd.row}px high`);
      if (uhd.units !== hd.units) bad.push(`${hd.units} -> ${uhd.units} unit rows`);
      if (uhd.map < 1.9 * hd.map || Math.abs(uhd.canvas - uhd.map) > 1) bad.push(`map ${hd.map}px -> ${uhd.map}px wide, its drawing layer ${uhd.canvas}px`);
      if (uhd.overflows) bad.push("the page overflows the screen");
      if (bad.length) throw new Error(`not the same page scaled: ${bad.join("; ")}`);
      await page.screenshot({ path: path.join(artifacts, "08-4k.png") });
    });

    if (consoleErrors.length) throw new Error("errors in the page: " + consoleErrors.join("; "));
  } finally {
    await browser?.close();
    await stopServer();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => console.log(`wall display browser tests: all passed (screenshots in ${path.relative(process.cwd(), artifacts)})`),
  (e) => {
    if (!failures) console.error(e);
    console.error("wall display browser tests: FAILED");
    process.exit(1);
  },
);
