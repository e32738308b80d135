// Fails the build when the app's JavaScript is over its budget (issue 16: 200 KB gzipped).
import { readdirSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const BUDGET_BYTES = 200 * 1024;
const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), "../dist");
let total = 0;
for (const dir of [dist, path.join(dist, "assets")]) {
  for (const f of readdirSync(dir)) if (f.endsWith(".js")) total += gzipSync(readFileSync(path.join(dir, f))).length;
}
console.log(`responder app: ${(total / 1024).toFixed(1)} KB of JavaScript gzipped (budget ${BUDGET_BYTES / 1024} KB)`);
if (total > BUDGET_BYTES) {
  console.error("over the JavaScript budget");
  process.exit(1);
}
