// The portal's service worker (a template: build.mjs fills in the app shell's files and
// the build's version, and writes it next to the page as sw.js).
//
// It keeps the app shell only: the page, its script and stylesheet, the manifest and the
// icons, so that the installed portal opens without a network and says it is offline.
// It stores nothing else, ever: no FHIR response, no token, nothing about a patient (the
// shell is the same for everyone). Requests for anything else pass it by untouched.
const VERSION = "035bf50fedcf70fc";
const SHELL = ["./","assets/main-Q54ESJ7O.js","assets/main-4HYXRKWG.css","manifest.webmanifest","icon.svg","icon-192.png","icon-512.png"];
const CACHE = `portal-shell-${VERSION}`;
const scope = new URL("./", self.location.href);
const shell = new Set(SHELL.map((path) => new URL(path, scope).href));

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll([...shell]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  // the shells of earlier versions go
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== scope.origin) return;
  if (request.mode === "navigate") {
    if (url.pathname !== scope.pathname) return;
    // the page: from the network (the return from the sign-in carries its code in the
    // query), else the kept copy of the shell (which then says it is offline)
    event.respondWith(
      fetch(request).catch(() =>
        caches.match(scope.href, { cacheName: CACHE }).then((kept) => kept || Response.error()),
      ),
    );
    return;
  }
  if (url.search || !shell.has(url.href) || url.href === scope.href) return;
  // the hashed script and stylesheet, the manifest and the icons: the kept copy first
  event.respondWith(
    caches.match(url.href, { cacheName: CACHE }).then((kept) => kept || fetch(request)),
  );
});
