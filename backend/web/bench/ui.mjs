// The wall display's figures, measured in Debian's chromium (headless, software rendering)
// against the real `muster` server on loopback.
//
//   node backend/web/bench/ui.mjs [--runs 3] [--seconds 10] [--units 2000] [--incidents 500] [--via-server]
//                                 [--muster target/release/muster]
//
// First render: the server holds --units units and --incidents incidents (registered through
// the API before the runs); a fresh browser profile opens the page; the figure is the time
// from navigation start to the frame after the base map and the feed's snapshot are drawn
// (`performance.mark("muster:first-render")`). Baseline in the same run: the time to the
// page's DOMContentLoaded, which has no data in it.
//
// Frame time: the page's synthetic feed (`?bench=units:N,incidents:M`) moves every unit once
// a second, as feed messages parsed and applied by the same code as the socket's; the figure
// is the p95 of the intervals between animation frames over --seconds, with the boards
// refreshing as usual. Baseline in the same run: the same page with no units and no
// incidents. Medians over --runs.
//
// Map draws: a heavy scene (a draw over 6 ms) glides at half the display's rate, so the
// animation frames come faster than the moving map changes. What the eye sees is the map's
// draws: their rate per second and the p95 of the intervals between them, over the same
// frames; the target for the frame time applies to them too.
//
// --via-server: instead, the live page follows the real feed while this process reports
// every unit's position once a second through the API (POST /api/units/{id}/position, 64 at
// a time); it prints the rate it reached. Baseline: the same live page with nothing moving.
// On one small machine the server, this driver and the browser share the cores.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../../..");
const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : dflt);
const RUNS = Number(opt("runs", 3));
const SECONDS = Number(opt("seconds", 10));
const UNITS = Number(opt("units", 2000));
const INCIDENTS = Number(opt("incidents", 500));
// The newer of the release and debug builds, unless --muster names one.
const defaultBin = ["release", "debug"]
  .map((p) => path.join(root, "target", p, "muster"))
  .filter(existsSync)
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
const MUSTER = opt("muster", defaultBin);
const TOKEN = "wall-bench-operator-token-0123456789";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const VIA_SERVER = argv.includes("--via-server");
const TARGET = { frameP95Ms: 50, firstRenderMs: 2000 };

const say = (s) => process.stderr.write(s + "\n");
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function pool(n, items, f) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await f(items[next++]);
  }));
}

/**
 * Over `seconds`: animation-frame intervals (`gaps`), the overlay's draw durations (`draws`),
 * the intervals between draws (`drawGaps`) and the draws per second (`drawRate`).
 */
function sample(page, seconds) {
  return page.evaluate((ms) => new Promise((resolve) => {
    const gaps = [];
    const m = window.muster.map;
    m.frameTimes.length = 0;
    m.drawnAt.length = 0;
    const start = performance.now();
    let last = start;
    const end = last + ms;
    const tick = (now) => {
      gaps.push(now - last);
      last = now;
      if (now < end) requestAnimationFrame(tick);
      else {
        const at = m.drawnAt.filter((t) => t >= start && t <= now);
        const drawGaps = at.slice(1).map((t, k) => t - at[k]);
        resolve({ gaps, draws: [...m.frameTimes], drawGaps, drawRate: (at.length * 1000) / (now - start) });
      }
    };
    requestAnimationFrame(tick);
  }), seconds * 1000);
}

/** Reports every unit's position once a second (in tenths) until stopped; answers the rate. */
// `run` keeps each run's idempotency keys apart: a repeated key is answered from the log and
// moves nothing.
async function drive(ids, post, stop, run) {
  const t0 = Date.now();
  let sent = 0, tick = 0;
  const slice = Math.ceil(ids.length / 10);
  while (!stop.now) {
    const due = t0 + tick * 100;
    const batch = ids.slice((tick % 10) * slice, (tick % 10 + 1) * slice);
    await pool(64, batch, async (id) => {
      await post(`/api/units/${id}/position`, {
        location: { lat: 60.1645 + Math.random() * 0.0142, lon: 24.9355 + Math.random() * 0.0176 },
      }, `bench-pos-${run}-${id}-${tick}`);
      sent++;
    });
    tick++;
    const wait = t0 + tick * 100 - Date.now();
    if (wait > 0 && due) await new Promise((r) => setTimeout(r, wait));
  }
  return sent / ((Date.now() - t0) / 1000);
}

async function main() {
  if (!MUSTER || !existsSync(MUSTER)) throw new Error("no muster binary: cargo build --release --bin muster, or pass --muster");
  if (!existsSync(path.join(here, "../dist/index.html"))) throw new Error("build the app first: (cd backend/web && npm ci && npm run build)");
  const data = mkdtempSync(path.join(tmpdir(), "muster-bench-ui-"));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(MUSTER, ["serve", "--data-dir", data, "--bind", `127.0.0.1:${port}`], {
    env: { ...process.env, MUSTER_USERS: `bench:operator:${TOKEN}`, MUSTER_WEB_BUILD: "0", MUSTER_WEB_DIST: path.join(here, "../dist"), MUSTER_GATEWAY_BIND: "off" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const exited = new Promise((r) => server.on("exit", r));
  const profiles = [];
  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${base}/readyz`)).ok) break;
      } catch {}
      if (i > 600) throw new Error("the server did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
    const post = async (p, body, key) => {
      const res = await fetch(base + p, {
        method: "POST",
        headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body),
      });
      if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
      const answer = await res.json();
      if (answer.unit_id && p === "/api/units") unitIds.push(answer.unit_id);
      return answer;
    };
    const unitIds = [];
    const t0 = Date.now();
    const rnd = (a, b) => a + Math.random() * (b - a);
    const area = [[60.1645, 24.9355], [60.1787, 24.9531]];
    await pool(16, [...Array(UNITS).keys()], (i) =>
      post("/api/units", {
        kind: "engine", call_sign: `B${i}`, agency: "bench", home_station: "s-bench", capabilities: ["pump"],
        location: { lat: rnd(area[0][0], area[1][0]), lon: rnd(area[0][1], area[1][1]) },
      }, `bench-unit-${i}`));
    await pool(16, [...Array(INCIDENTS).keys()], (i) =>
      post("/api/incidents", {
        location: { lat: rnd(area[0][0], area[1][0]), lon: rnd(area[0][1], area[1][1]) },
        incident_type: "medical", priority: `P${1 + (i % 5)}`,
      }, `bench-incident-${i}`));
    say(`seeded ${UNITS} units and ${INCIDENTS} incidents through the API in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

    const first = [], shell = [], frames = [], empty = [], draws = [], rates = [], drawRates = [], drawGaps = [], frameRates = [];
    for (let run = 0; run < RUNS; run++) {
      const profile = mkdtempSync(path.join(tmpdir(), "muster-bench-chromium-"));
      profiles.push(profile);
      const ctx = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true, args: ARGS,
        viewport: { width: 1920, height: 1080 },
      });
      try {
        const page = ctx.pages()[0] ?? (await ctx.newPage());
        await page.goto(`${base}/#token=${TOKEN}`);
        await page.waitForFunction(() => performance.getEntriesByName("muster:first-render").length > 0, null, { timeout: 60_000 });
        const t = await page.evaluate(() => ({
          first: performance.getEntriesByName("muster:first-render")[0].startTime,
          shell: performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd,
          units: window.muster.live.units.size,
        }));
        if (t.units < UNITS) throw new Error(`the page shows ${t.units} units, not ${UNITS}`);
        first.push(t.first);
        shell.push(t.shell);

        const measure = async (spec) => {
          await page.goto(`${base}/?bench=${spec}#token=${TOKEN}`);
          await page.waitForFunction(() => window.benchReady === true);
          await page.waitForTimeout(2000); // warm-up before measuring
          return sample(page, SECONDS);
        };
        let busy, idle;
        if (VIA_SERVER) {
          // The live page on the real feed; this process reports every unit's position once a
          // second through the API. Baseline: the same live page while nothing moves.
          await page.goto(`${base}/#token=${TOKEN}`);
          await page.waitForFunction((n) => window.muster.live.units.size >= n, UNITS, { timeout: 60_000 });
          await page.waitForTimeout(2000); // warm-up before measuring
          idle = await sample(page, SECONDS);
          const stop = { now: false };
          const driving = drive(unitIds, post, stop, run);
          await page.waitForTimeout(2000); // the stream of positions settles
          busy = await sample(page, SECONDS);
          stop.now = true;
          const rate = await driving;
          say(`positions reported through the API: ${rate.toFixed(0)}/s`);
          rates.push(rate);
        } else {
          busy = await measure(`units:${UNITS},incidents:${INCIDENTS}`);
          idle = await measure("units:0,incidents:0");
        }
        frames.push(pct(busy.gaps, 95));
        draws.push(pct(busy.draws, 95));
        empty.push(pct(idle.gaps, 95));
        drawRates.push(busy.drawRate);
        drawGaps.push(pct(busy.drawGaps, 95));
        frameRates.push((busy.gaps.length * 1000) / busy.gaps.reduce((a, b) => a + b, 0));
        say(`run ${run + 1}/${RUNS}: first render ${t.first.toFixed(0)} ms (page shell ${t.shell.toFixed(0)} ms); ` +
          `frame p95 ${pct(busy.gaps, 95).toFixed(1)} ms over ${busy.gaps.length} frames (draw p95 ${pct(busy.draws, 95).toFixed(1)} ms), empty map ${pct(idle.gaps, 95).toFixed(1)} ms; ` +
          `map drawn ${busy.drawRate.toFixed(1)} times/s, interval between draws p95 ${pct(busy.drawGaps, 95).toFixed(1)} ms`);
      } finally {
        await ctx.close();
      }
    }
    const r = {
      units: UNITS, incidents: INCIDENTS, runs: RUNS, seconds: SECONDS,
      first_render_ms: median(first), page_shell_ms: median(shell),
      frame_p95_ms: median(frames), draw_p95_ms: median(draws), empty_frame_p95_ms: median(empty),
      frames_per_s: median(frameRates), map_draws_per_s: median(drawRates), map_draw_interval_p95_ms: median(drawGaps),
      via_server: VIA_SERVER, positions_per_s: rates.length ? median(rates) : null,
    };
    console.log(`wall display, ${UNITS} units moving once a second, ${INCIDENTS} incidents; medians of ${RUNS} runs; ${path.relative(root, MUSTER)}; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
    console.log(`  first render      ${r.first_render_ms.toFixed(0)} ms   (target <= ${TARGET.firstRenderMs} ms: ${r.first_render_ms <= TARGET.firstRenderMs ? "met" : "MISSED"}); page shell without data ${r.page_shell_ms.toFixed(0)} ms, ratio ${(r.first_render_ms / r.page_shell_ms).toFixed(1)}x`);
    console.log(`  frame time p95    ${r.frame_p95_ms.toFixed(1)} ms  (target <= ${TARGET.frameP95Ms} ms: ${r.frame_p95_ms <= TARGET.frameP95Ms ? "met" : "MISSED"}); empty map ${r.empty_frame_p95_ms.toFixed(1)} ms, ratio ${(r.frame_p95_ms / r.empty_frame_p95_ms).toFixed(2)}x`);
    console.log(`  map draws seen     ${r.map_draws_per_s.toFixed(1)}/s of ${r.frames_per_s.toFixed(1)} frames/s; interval between draws p95 ${r.map_draw_interval_p95_ms.toFixed(1)} ms  (target <= ${TARGET.frameP95Ms} ms: ${r.map_draw_interval_p95_ms <= TARGET.frameP95Ms ? "met" : "MISSED"}; what the eye sees of the moving map)`);
    if (VIA_SERVER) console.log(`  positions through the API ${r.positions_per_s.toFixed(0)}/s (wanted ${UNITS}/s); baseline: the same live page with nothing moving`);
    console.log(`  draw p95          ${r.draw_p95_ms.toFixed(1)} ms  (the overlay's own drawing per frame)`);
    console.log(JSON.stringify(r));
  } finally {
    server.kill("SIGTERM");
    await exited;
    rmSync(data, { recursive: true, force: true });
    for (const p of profiles) rmSync(p, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
