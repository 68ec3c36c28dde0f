// Builds the portal into ../fhir_server/portal/static (committed, so the Python package
// serves it without Node): one minified, content-hashed script and stylesheet, the
// HTML page that loads them, the web app manifest and its icons (PNGs drawn here), and
// the offline service worker (sw.js) that keeps exactly those files.
//
//   npm ci && npm run build        (npm run typecheck: tsc over src/)
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { deflateSync, crc32 } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "fhir_server", "portal", "static");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

// fhirclient asks for a WebCrypto polyfill only where the browser has no crypto, and for
// fetch polyfills unless FHIRCLIENT_PURE is defined: browsers the portal supports have both.
const noPolyfills = {
  name: "no-polyfills",
  setup(b) {
    b.onResolve({ filter: /^isomorphic-webcrypto$/ }, () => ({ path: "empty", namespace: "empty" }));
    b.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export default {}" }));
  },
};

const result = await build({
  entryPoints: [join(here, "src", "main.tsx")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  define: { FHIRCLIENT_PURE: "true", "process.env.NODE_ENV": '"production"' },
  plugins: [noPolyfills],
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "linked",
  logLevel: "info",
});

// The licenses of the packages bundled into the script (their notices must travel with it).
writeFileSync(join(out, "THIRD-PARTY-LICENSES.txt"), licenses(result.metafile));

const assets = readdirSync(join(out, "assets"));
const script = assets.find((f) => f.startsWith("main-") && f.endsWith(".js"));
const style = assets.find((f) => f.startsWith("main-") && f.endsWith(".css"));
const page = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("%SCRIPT%", `assets/${script}`)
  .replace("%STYLE%", `assets/${style}`);
writeFileSync(join(out, "index.html"), page);
copyFileSync(join(here, "src", "manifest.webmanifest"), join(out, "manifest.webmanifest"));
copyFileSync(join(here, "src", "icon.svg"), join(out, "icon.svg"));
for (const size of [192, 512]) writeFileSync(join(out, `icon-${size}.png`), icon(size));

// The offline service worker: the app shell's files (never data) and the build's version.
const shell = ["./", `assets/${script}`, `assets/${style}`, "manifest.webmanifest", "icon.svg", "icon-192.png", "icon-512.png"];
const worker = readFileSync(join(here, "src", "sw.js"), "utf8")
  .replace('"%VERSION%"', JSON.stringify(sourceHash().slice(0, 16)))
  .replace('["%SHELL%"]', JSON.stringify(shell));
writeFileSync(join(out, "sw.js"), worker);

// What the build was made from: tests/portal checks that it matches the source, so a
// change to the app that was not rebuilt (npm run build) is caught without Node.
writeFileSync(join(out, "BUILD"), JSON.stringify({ source: sourceHash() }, null, 2) + "\n");
console.log(Object.keys(result.metafile.outputs).join("\n"));

/** Each bundled npm package: name, version, license and its license file's text. */
function licenses(metafile) {
  const packages = new Set();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packages.add(match[1]);
  }
  const parts = ["Third-party software in the patient portal's script (assets/main-*.js)\n"];
  for (const name of [...packages].sort()) {
    const dir = join(here, "node_modules", name);
    const info = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f));
    const text = file ? readFileSync(join(dir, file), "utf8").trim() : `License: ${info.license}`;
    parts.push(`${"=".repeat(78)}\n${name} ${info.version} (${info.license})\n\n${text}\n`);
  }
  return parts.join("\n");
}

/** sha256 over package.json, package-lock.json, build.mjs and src/**: each file's path
 * (relative, "/"-separated) and bytes, in path order, each followed by a NUL byte. */
function sourceHash() {
  const files = ["package.json", "package-lock.json", "build.mjs"];
  const walk = (dir) => {
    for (const entry of readdirSync(join(here, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else files.push(path);
    }
  };
  walk("src");
  const hash = createHash("sha256");
  for (const f of files.sort()) {
    hash.update(f);
    hash.update("\0");
    hash.update(readFileSync(join(here, f)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

// The app icon: a teal rounded square with a white cross, as an RGBA PNG.
function icon(size) {
  const radius = size * 0.18;
  const arm = size * 0.14;
  const reach = size * 0.3;
  const c = size / 2;
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const dx = Math.max(radius - x, x - (size - 1 - radius), 0);
      const dy = Math.max(radius - y, y - (size - 1 - radius), 0);
      const inside = dx * dx + dy * dy <= radius * radius;
      const cross =
        (Math.abs(x - c) <= arm && Math.abs(y - c) <= reach) ||
        (Math.abs(y - c) <= arm && Math.abs(x - c) <= reach);
      const o = y * (size * 4 + 1) + 1 + x * 4;
      const [r, g, b] = cross ? [255, 255, 255] : [0, 105, 120];
      raw[o] = r;
      raw[o + 1] = g;
      raw[o + 2] = b;
      raw[o + 3] = inside ? 255 : 0;
    }
  }
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
