// Bench only. Runs jwt_v8_profile.wasm (built by run.sh) under this Node's V8 with several
// compiler settings, interleaved, and takes a CPU profile per algorithm. Node's V8 is not
// Envoy's V8 (a different version): the figures show where time goes and how the tiers compare,
// not Envoy's exact cost (make bench measures that).
//
//   node run.mjs WASM FIXTURES [--rounds R] [--n N] [--algs ES256,RS256,PS256,EdDSA,HS256]
//                              [--modes turbofan,turbofan+inlining,liftoff,default] [--variant NAME=WASM]...
//                              [--variant-modes M,...] [--profile DIR] [--profile-mode MODE]
//   node <v8 flags> run.mjs --child WASM FIXTURES ALG N   (one measurement, one JSON line)
//
// Modes: `turbofan` = Envoy's setting (proxy-wasm-cpp-host starts V8 with --no-liftoff: every
// function TurboFan-compiled at load, no tier-up); `liftoff` = the baseline compiler only
// (--liftoff --no-wasm-tier-up); `default` = Node's own default (Liftoff, then TurboFan for hot
// functions); `turbofan+inlining` = Envoy's setting plus wasm-into-wasm inlining, experimental
// and off in Node 20's V8 (11.3) but on by default in newer V8 (Envoy 1.40 has 14.6), so the
// closer guess at Envoy's code. `--variant` adds other builds of the module (e.g. different
// dependency features), measured in the same rounds in each of --variant-modes (default
// turbofan,turbofan+inlining), each as a ratio to this build in the same mode. HS256 is the reference for
// everything but the asymmetric arithmetic: the same token decode, jwt-simple parsing and claims
// checks, and an HMAC-SHA-256.
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SELF = fileURLToPath(import.meta.url);
const MODES = {
  turbofan: ["--no-liftoff"],
  "turbofan+inlining": ["--no-liftoff", "--wasm-inlining"],
  liftoff: ["--liftoff", "--no-wasm-tier-up"],
  default: [],
};

async function child([wasmPath, fixtures, alg, n, ...rest]) {
  const { WASI } = await import("node:wasi");
  const dir = path.dirname(path.resolve(fixtures));
  const wasi = new WASI({
    version: "preview1",
    args: ["jwt_v8_profile", "/fx/" + path.basename(fixtures), alg, String(n), ...rest],
    env: {},
    preopens: { "/fx": dir },
    returnOnExit: true,
  });
  const module = await WebAssembly.compile(readFileSync(wasmPath));
  // meshwall-core links the proxy-wasm SDK, whose host calls are imported from `env`; nothing
  // here calls them: stubs that fail loudly.
  const imports = wasi.getImportObject();
  imports.env = {};
  for (const i of WebAssembly.Module.imports(module)) {
    if (i.module === "env") imports.env[i.name] = () => { throw new Error(`host call ${i.name} in the bench`); };
  }
  const instance = await WebAssembly.instantiate(module, imports);
  const code = wasi.start(instance);
  process.exitCode = code;
}

function measure(flags, wasm, fixtures, alg, n, extra = [], tail = []) {
  const r = spawnSync(process.execPath, [...flags, ...extra, "--no-warnings", SELF, "--child", wasm, fixtures, alg, String(n), ...tail],
    { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${alg} ${flags.join(" ")}: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmt = (x, d = 0) => x.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

// Rust legacy symbol names (_ZN...E, as the name section has them) made readable; others as they are.
function demangle(name) {
  if (!name.startsWith("_ZN") || !name.endsWith("E")) return name;
  const parts = [];
  let i = 3;
  while (i < name.length - 1) {
    const m = /^\d+/.exec(name.slice(i));
    if (!m) return name;
    i += m[0].length;
    parts.push(name.slice(i, i + Number(m[0])));
    i += Number(m[0]);
  }
  if (parts.length && /^h[0-9a-f]{16}$/.test(parts[parts.length - 1])) parts.pop();
  const esc = { SP: "@", BP: "*", RF: "&", LT: "<", GT: ">", LP: "(", RP: ")", C: "," };
  return parts.map((p) => p
    .replace(/\$([A-Z]{1,2})\$/g, (m, k) => esc[k] ?? m)
    .replace(/\$u([0-9a-f]{2,6})\$/g, (m, h) => String.fromCodePoint(parseInt(h, 16)))
    .replace(/\.\./g, "::")
    .replace(/^_([${<])/, "$1")).join("::");
}

// Where a function's self time goes, by its (demangled) name. With LTO much is inlined: a
// function's self time includes what was inlined into it, so `glue` (meshwall's and
// jwt-simple's verify code) holds e.g. inlined base64, JSON and hashing too.
const CATEGORIES = [
  ["alloc/memcpy", /\bmalloc\b|\bfree\b|realloc|calloc|dlmalloc|memcpy|memmove|memset|memcmp|__rust_(alloc|dealloc|realloc)|raw_vec|RawVec/],
  ["bigint/field arithmetic", /num_bigint|crypto_bigint|p256::|primeorder|elliptic_curve|fiat|__multi3|__udivti3|__umodti3|ed25519_compact::(edwards25519|field25519|curve25519|ed25519::PublicKey::verify)|ecdsa::|monty|BigUint|rsa::(algorithms|hazmat|internals)/],
  ["SHA-2/HMAC", /sha2::|hmac_sha|sha256|sha512|digest::|blake2/],
  ["base64/JSON/claims", /base64|ct_codecs|serde|json|coarsetime|binstring|meshwall_jwt::token|core::str|core::fmt|core::num/],
  ["glue (jwt-simple/meshwall, with inlined code)", /jwt_simple|meshwall_jwt|time_loop|jwt_v8_profile|rsa::|superboring|ed25519_compact/],
];

function categorise(name) {
  for (const [cat, re] of CATEGORIES) if (re.test(name)) return cat;
  return "other";
}

// Self samples per wasm function from a .cpuprofile, counting only samples taken under the
// bench's timing loop (`time_loop`): not start-up, key parsing or compilation.
function profileTable(file) {
  const prof = JSON.parse(readFileSync(file, "utf8"));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children || []) parent.set(c, n.id);
  const inLoop = new Map();
  const underLoop = (id) => {
    if (inLoop.has(id)) return inLoop.get(id);
    const n = byId.get(id);
    const v = /time_loop/.test(n.callFrame.functionName) || (parent.has(id) && underLoop(parent.get(id)));
    inLoop.set(id, v);
    return v;
  };
  const self = new Map();
  let total = 0, loop = 0;
  for (const id of prof.samples) {
    total += 1;
    if (!underLoop(id)) continue;
    loop += 1;
    const fn = demangle(byId.get(id).callFrame.functionName || "(anonymous)");
    self.set(fn, (self.get(fn) || 0) + 1);
  }
  return { self, total, loop };
}

async function parent(argv) {
  const [wasm, fixtures] = argv;
  const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
  const rounds = Number(opt("--rounds", 3));
  const n = Number(opt("--n", 60));
  const algs = opt("--algs", "ES256,RS256,PS256,EdDSA,HS256").split(",");
  const modes = opt("--modes", "turbofan,turbofan+inlining,liftoff,default").split(",");
  const profileDir = opt("--profile", "");
  const profileMode = opt("--profile-mode", "turbofan");
  const variants = [];
  argv.forEach((a, i) => { if (a === "--variant") { const [k, v] = argv[i + 1].split("="); variants.push([k, v]); } });

  console.log(`node ${process.version}, V8 ${process.versions.v8}; ${rounds} interleaved rounds of ${n} verifications ` +
    `per algorithm and setting, each in a fresh process; CPU = the Node process's CPU time in the loop; ` +
    `ratios to the reference in the same round`);
  const variantModes = opt("--variant-modes", "turbofan,turbofan+inlining").split(",");
  // [label, mode, wasm]; each ratio is to this build in the same mode and round.
  const cols = [...modes.map((m) => [m, m, wasm]),
    ...variants.flatMap(([k, v]) => variantModes.map((m) => [`${k} [${m}]`, m, v]))];
  const res = {};
  for (let r = 0; r < rounds; r++) {
    for (const alg of algs) {
      for (const [label, mode, w] of cols) {
        const x = measure(MODES[mode], w, fixtures, alg, n);
        ((res[alg] ??= {})[label] ??= []).push(x);
      }
    }
  }
  console.log();
  console.log(`${"alg".padEnd(7)}${"setting / build".padEnd(32)}${"wall µs".padStart(9)}${"CPU µs".padStart(9)}` +
    `${"CPU ratio (min–max)".padStart(22)}${"decode µs".padStart(11)}`);
  for (const alg of algs) {
    for (const [label, mode] of cols) {
      const ref = res[alg][label.includes(" [") ? mode : cols[0][0]];
      const xs = res[alg][label];
      const ratios = xs.map((x, i) => x.cpu_us / ref[i].cpu_us);
      const refName = label.includes(" [") ? `vs ${mode}` : `vs ${cols[0][0]}`;
      console.log(`${alg.padEnd(7)}${label.padEnd(32)}${fmt(median(xs.map((x) => x.wall_us))).padStart(9)}` +
        `${fmt(median(xs.map((x) => x.cpu_us))).padStart(9)}` +
        `${(fmt(median(ratios), 2) + "× (" + fmt(Math.min(...ratios), 2) + "–" + fmt(Math.max(...ratios), 2) + ")").padStart(22)}` +
        `${fmt(median(xs.map((x) => x.decode_cpu_us)), 1).padStart(11)}  ${refName}`);
    }
  }
  if (!profileDir) return;
  mkdirSync(profileDir, { recursive: true });
  for (const alg of algs) {
    const dir = path.join(profileDir, alg);
    rmSync(dir, { recursive: true, force: true });
    // Eager compilation here, so that no lazy TurboFan compile lands in the loop.
    measure(MODES[profileMode], wasm, fixtures, alg, n * 4,
      ["--no-wasm-lazy-compilation", "--cpu-prof", "--cpu-prof-dir", dir, "--cpu-prof-interval", "200"], ["10", "no-decode"]);
    const file = path.join(dir, readdirSync(dir).find((f) => f.endsWith(".cpuprofile")));
    const { self, total, loop } = profileTable(file);
    const cats = new Map();
    for (const [fn, c] of self) cats.set(categorise(fn), (cats.get(categorise(fn)) || 0) + c);
    console.log(`\n${alg}: CPU profile (${MODES[profileMode].join(" ")}), ${n * 4} verifications: ${loop} of ${total} samples ` +
      `(every 200 µs) in the timing loop; by self time:`);
    console.log("  " + [...cats].sort((a, b) => b[1] - a[1]).map(([k, c]) => `${k} ${fmt(100 * c / loop)}%`).join(", "));
    const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 10);
    for (const [fn, c] of top) {
      const short = fn.length > 110 ? fn.slice(0, 107) + "..." : fn;
      console.log(`  ${fmt(100 * c / loop, 1).padStart(5)}%  ${short}`);
    }
    console.log(`  (profile: ${file})`);
  }
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") await child(argv.slice(1));
else await parent(argv);
