// The responder app's service worker: keeps the app shell so the app opens with no network.
// The build fills in SHELL (every file of the build) and VERSION (a hash of their names).
const SHELL = __SHELL__;
const CACHE = "muster-responder-" + __VERSION__;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("muster-responder-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || url.origin !== self.location.origin || url.pathname.endsWith("/gateway.json")) return;
  if (req.mode === "navigate") {
    // The page: the network's when there is one (a new version), else the kept shell.
    event.respondWith(fetch(req).catch(() => caches.match("./", { ignoreSearch: true }).then((r) => r || Response.error())));
    return;
  }
  event.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
});
