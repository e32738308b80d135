import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { defineConfig, type Plugin } from "vite";

/** Writes sw.js with the list of every file of the build, so the service worker keeps the
 * whole app shell. */
function serviceWorker(): Plugin {
  return {
    name: "responder-service-worker",
    apply: "build",
    generateBundle(_options, bundle) {
      const files = ["./", ...Object.keys(bundle).map((f) => `./${f}`), "./manifest.webmanifest", "./icon.svg"];
      const version = createHash("sha256").update(files.join("\n")).digest("hex").slice(0, 12);
      const source = readFileSync(new URL("./src/sw.js", import.meta.url), "utf8")
        .replace("__SHELL__", JSON.stringify(files))
        .replace("__VERSION__", JSON.stringify(version));
      this.emitFile({ type: "asset", fileName: "sw.js", source });
    },
  };
}

export default defineConfig({
  base: "/responder/",
  plugins: [serviceWorker()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/responder/gateway.json": "http://127.0.0.1:8080" } },
});
