#!/usr/bin/env node
/**
 * hoist run vs podman run, rootless, on this machine, no network.
 *
 *   npm run bench:run -- [--runs N] [--out FILE]
 *
 * Run as root (CI and sessions are), the bench drops to the unprivileged user of the rootless tests (test/helpers/
 * rootless.ts: $HOIST_CI_USER, else hoistci) and does everything as that user: both tools run exactly as a user
 * would run them, and the timed processes are the tools themselves (no runuser in between). Run as a normal user,
 * it runs as that user directly. The bench installs nothing: podman must be installed (apt-get install podman).
 *
 * Scenarios (tools alternate; who goes first swaps every run; medians; wall time of the whole process):
 *   warm    `run --rm --network none IMG true` on a small busybox image already in each store and already run
 *           once (so both have it unpacked): the fixed cost of starting a container. Target hoist ≤ 0.5× podman.
 *   first   the first `run --rm --network none IMG true` of a ~270 MiB image (busybox + 8 × 32 MiB incompressible
 *           layers + a 5000-file layer + a tiny one; bench/fixture.ts) freshly loaded into an EMPTY store before
 *           every run (hoist: `hoist copy oci:DIR:big NAME` into a new HOIST_ROOT; podman: `podman pull oci:DIR:big`
 *           into a new --root). Only the run is timed. Both unpack layers while loading (podman in pull, hoist in
 *           copy into the store, untimed here); any unpacking left to the first run counts against it.
 *           Target hoist ≤ 1.0× podman.
 *   load + first   the same attempts' `hoist copy` / `podman pull` time plus the first run, for reference (no
 *           target): the like-for-like sum, wherever each tool does its unpacking.
 * After timing, each first run is checked with an untimed second run that reads the image's top and a big layer.
 *
 * podman rootless configuration, found by hand on this machine (Debian 12, podman 4.3.1, cgroup v1, kernel 6.18):
 *   podman --root R --runroot RR --tmpdir T     private storage and state per store; T holds pause.pid
 *          --storage-driver overlay             native rootless overlay works here (no fuse-overlayfs needed);
 *                                               the bench falls back to vfs when it does not, and says so
 *          --runtime runc                       crun refuses to start on these machines (cgroups hybrid mode)
 *          --cgroup-manager cgroupfs            no systemd user session; with cgroup v1 rootless podman skips cgroups
 *          --events-backend file                no journald for the user
 *   with HOME and XDG_RUNTIME_DIR (mode 0700) pointing into the store's own directory. podman's default log driver
 *   here is k8s-file. Rootless podman keeps a "pause" process per --tmpdir holding its user namespace, and conmon
 *   lingers briefly after `run --rm` returns: both are stopped by pid before a store is removed.
 * hoist: `node cmd/hoist.mjs run --rm --network none IMG true` with HOIST_ROOT, the same HOME/XDG_RUNTIME_DIR
 * layout, and a Node compile cache shared by all runs (it caches Node's compiled code, not image state).
 * Results: a markdown table on stdout and bench/results/run.json; a failing hoist (or podman) is recorded with its
 * error, as bench:copy does.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { digestBytes } from '../src/oci/digest.ts';
import { OCI_CONFIG, OCI_MANIFEST } from '../src/oci/mediatype.ts';
import { OciLayout } from '../src/store/layout.ts';
import { makeBusyboxImage } from '../testdata/make-busybox.ts';
import { run as runCmd } from '../test/helpers/run.ts';
import { assertCheckoutReadable, ciUser, hostIds, isRoot, removeTree, USER_PATH, userTempDir } from '../test/helpers/rootless.ts';
import { makeCopyFixture } from './fixture.ts';
import { inUserTempDir, requireNode24, runBench, awaitUserRun,
  AbortedError, alternateRuns, fmt, installSignalHandlers, isAborted, median, medianCell, mib, onCleanup, dropCleanup, runTool, type ToolResult, type ToolRun,
  hoistBin, storeEnv,
} from './lib.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOIST = await hoistBin(path.join(REPO_ROOT, 'cmd', 'hoist.mjs'));
const THIS_FILE = fileURLToPath(import.meta.url);
const PODMAN = '/usr/bin/podman';
const WARM_TARGET = 0.5;
const FIRST_TARGET = 1.0;
const SMALL_NAME = 'localhost/bench-busybox:latest';
const BIG_NAME = 'localhost/bench-big:latest';
const BIG_REF = 'big';

type ToolName = 'hoist' | 'podman';
const TOOLS: readonly ToolName[] = ['hoist', 'podman'];


interface ScenarioResult {
  key: string;
  label: string;
  /** hoist/podman upper bound on the median ratio; null: reported only. */
  target: number | null;
  hoist: ToolResult;
  podman: ToolResult;
  ratio: number | null;
  pass: boolean | null;
}

/** One tool's private store: everything it writes lives under `dir`. */
interface Store {
  tool: ToolName;
  dir: string;
  env: NodeJS.ProcessEnv;
  /** Arguments before the subcommand: podman's global flags; hoist's CLI path. */
  prefix: string[];
  cmd: string;
  destroy: () => Promise<void>;
}

interface Ctx {
  work: string;
  rssFile: string;
  compileCache: string;
  podmanDriver: 'overlay' | 'vfs';
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** Short paths on purpose: rootless podman refuses a --runroot longer than 50 characters. */
function podmanGlobal(dir: string, driver: string): string[] {
  return [
    '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'rr'), '--tmpdir', path.join(dir, 'tmp'),
    '--storage-driver', driver, '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
  ];
}

/**
 * Pids of processes whose command line or environment mentions `dir`: conmon carries the store's paths in its exit
 * command; hoist has HOIST_ROOT, and both tools HOME, inside it (what a killed GNU time leaves running shows up here).
 */
async function processesMentioning(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    for (const file of ['cmdline', 'environ']) {
      try {
        if ((await readFile(`/proc/${name}/${file}`, 'utf8')).includes(`${dir}/`)) {
          pids.push(Number(name));
          break;
        }
      } catch {
        // Gone already, or not ours to read.
      }
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Stops what a store's tool left running, by pid: podman's pause process (its pid file is in the store's tmpdir)
 * and anything whose command line names the store (conmon finishing its exit command). Waits up to 5 s, then KILL.
 */
async function stopStrays(dir: string): Promise<void> {
  const pids = new Set(await processesMentioning(dir));
  for (const pidFile of [path.join(dir, 'tmp', 'pause.pid')]) {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 1) pids.add(pid);
  }
  // conmon first (it may still be running podman's cleanup inside the pause process's namespace), then the rest.
  const deadline = Date.now() + 5000;
  for (const pid of await processesMentioning(dir)) {
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  for (const pid of pids) {
    while (alive(pid) && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
    if (alive(pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
}

async function newStore(ctx: Ctx, tool: ToolName, name: string): Promise<Store> {
  if (isAborted()) throw new AbortedError();
  const dir = path.join(ctx.work, name);
  const env: NodeJS.ProcessEnv = {
    ...(await storeEnv(dir)),
    ...(tool === 'hoist' ? { HOIST_ROOT: path.join(dir, 'root'), NODE_COMPILE_CACHE: ctx.compileCache } : {}),
  };
  const destroy = async (): Promise<void> => {
    dropCleanup(destroy);
    await stopStrays(dir);
    await removeTree(dir);
  };
  onCleanup(destroy);
  return tool === 'hoist'
    ? { tool, dir, env, cmd: HOIST.cmd, prefix: HOIST.prefix, destroy }
    : { tool, dir, env, cmd: PODMAN, prefix: podmanGlobal(dir, ctx.podmanDriver), destroy };
}

/** An untimed command in a store; throws with its stderr on a non-zero exit. */
async function untimed(store: Store, args: string[]): Promise<string> {
  if (isAborted()) throw new AbortedError();
  const r = await runCmd(store.cmd, [...store.prefix, ...args], { env: store.env });
  if (isAborted()) throw new AbortedError();
  if (r.code !== 0) {
    const err = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.includes('is not a shared mount')).join('\n').trim();
    throw new Error(`${store.tool} ${args.join(' ')} exited with ${r.code}: ${err || '(no stderr)'}`);
  }
  return r.stdout;
}

/**
 * Copies the image `ref` of the OCI layout `layout` into the store under `name`. With `rssFile`, the copy
 * (`hoist copy` / `podman pull`; not podman's `tag`) is timed and its ToolRun returned.
 */
async function load(store: Store, layout: string, ref: string, name: string, rssFile?: string): Promise<ToolRun | undefined> {
  const src = `oci:${layout}:${ref}`;
  const args = store.tool === 'hoist' ? ['copy', src, name] : ['pull', '-q', src];
  let t: ToolRun | undefined;
  let stdout: string;
  if (rssFile === undefined) {
    stdout = await untimed(store, args);
  } else {
    t = await runTool(store.cmd, [...store.prefix, ...args], { env: store.env, rssFile });
    stdout = t.stdout;
  }
  if (store.tool === 'podman') await untimed(store, ['tag', stdout.trim().split('\n').pop()!, name]);
  return t;
}

function runArgs(name: string, cmd: string[]): string[] {
  return ['run', '--rm', '--network', 'none', name, ...cmd];
}

async function timedRun(ctx: Ctx, store: Store, name: string): Promise<ToolRun> {
  return runTool(store.cmd, [...store.prefix, ...runArgs(name, ['true'])], { env: store.env, rssFile: ctx.rssFile });
}

/** The big image: busybox's layer under bench/fixture.ts's 10-layer image, tagged `big` in the same layout. */
async function makeBigImage(dir: string): Promise<{ layers: number; bytes: number; digest: string }> {
  const fixture = await makeCopyFixture(dir);
  const bb = await makeBusyboxImage(dir, null);
  const layout = await OciLayout.open(dir, { create: false });
  const json = async (digest: string): Promise<Record<string, any>> => JSON.parse((await layout.readBlob(digest)).toString('utf8')) as Record<string, any>;
  const bbManifest = await json(bb.digest);
  const bbConfig = await json(bbManifest['config'].digest as string);
  const imgManifest = await json(fixture.imageDigest);
  const imgConfig = await json(imgManifest['config'].digest as string);
  const layers = [...bbManifest['layers'], ...imgManifest['layers']] as { size: number }[];
  const config = Buffer.from(JSON.stringify({
    ...imgConfig,
    rootfs: { type: 'layers', diff_ids: [...bbConfig['rootfs'].diff_ids, ...imgConfig['rootfs'].diff_ids] },
    history: [...bbConfig['history'], ...imgConfig['history']],
  }));
  await layout.putBlobBytes(config);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: digestBytes(config), size: config.length },
    layers,
  }));
  const digest = await layout.putBlobBytes(manifest);
  await layout.setRef(BIG_REF, { mediaType: OCI_MANIFEST, digest, size: manifest.length });
  return { layers: layers.length, bytes: layers.reduce((n, l) => n + l.size, 0) + config.length, digest };
}

async function scenario(
  key: string, label: string, target: number | null, runs: number,
  once: (tool: ToolName, i: number) => Promise<ToolRun>,
  preFailed: Partial<Record<ToolName, string>> = {},
): Promise<ScenarioResult> {
  const res = await alternateRuns(key, TOOLS, runs, once, preFailed);
  const ratio = res.hoist.median !== null && res.podman.median !== null ? res.hoist.median / res.podman.median : null;
  const pass = target === null ? null : ratio !== null && !res.hoist.failed && ratio <= target;
  return { key, label, target, hoist: res.hoist, podman: res.podman, ratio, pass };
}

function table(scenarios: ScenarioResult[]): string {
  const lines = [
    '| scenario | hoist median s | podman median s | ratio | target |',
    '|---|---:|---:|---:|---|',
  ];
  for (const s of scenarios) {
    const ratio = s.ratio === null ? '—' : `${fmt(s.ratio, 2)}×`;
    const target = s.target === null ? '—' : `≤ ${s.target.toFixed(1)}× ${s.pass ? 'PASS' : 'MISS'}`;
    lines.push(`| ${s.label} | ${medianCell(s.hoist)} | ${medianCell(s.podman)} | ${ratio} | ${target} |`);
  }
  return lines.join('\n');
}

/** Checks that `run` really ran the image: prints `ok` in busybox. Returns the error, or undefined. */
async function sanity(store: Store, name: string): Promise<string | undefined> {
  try {
    const out = await untimed(store, runArgs(name, ['sh', '-c', 'echo ok']));
    return out.trim() === 'ok' ? undefined : `${store.tool} run printed ${JSON.stringify(out)} instead of "ok"`;
  } catch (e) {
    if (isAborted()) throw e;
    return (e as Error).message;
  }
}

/** The whole benchmark, as the unprivileged user. Writes the results JSON to `out`. */
async function bench(work: string, runs: number, out: string): Promise<void> {
  const ctx: Ctx = { work, rssFile: path.join(work, 'rss'), compileCache: path.join(work, 'node-compile-cache'), podmanDriver: 'overlay' };
  const podmanVersion = (await runCmd(PODMAN, ['--version'])).stdout.trim();
  if (podmanVersion === '') throw new Error(`${PODMAN} does not run: install podman (apt-get install podman); the bench installs nothing`);

  log('making the images (busybox; busybox + 8 × 32 MiB random layers + 5000-file layer + tiny layer)…');
  const small = path.join(work, 'busybox-oci');
  await makeBusyboxImage(small, 'latest');
  const big = path.join(work, 'big-oci');
  const bigInfo = await makeBigImage(big);
  log(`big image: ${bigInfo.layers} layers, ${fmt(bigInfo.bytes / 1024 / 1024, 1)} MiB compressed`);

  // podman's storage: native overlay if it works here, else vfs (said in the results).
  let podmanStorageNote = 'native overlay (kernel overlayfs in the user namespace; no fuse-overlayfs)';
  let podmanWarm = await newStore(ctx, 'podman', 'pw');
  const probe = async (s: Store): Promise<void> => {
    await load(s, small, 'latest', SMALL_NAME);
    const err = await sanity(s, SMALL_NAME);
    if (err !== undefined) throw new Error(err);
  };
  try {
    await probe(podmanWarm);
  } catch (e) {
    if (isAborted()) throw e;
    const why = (e as Error).message;
    log(`podman with overlay storage failed (${why}); trying vfs`);
    await podmanWarm.destroy();
    ctx.podmanDriver = 'vfs';
    podmanStorageNote = `vfs: overlay failed here: ${why}`;
    podmanWarm = await newStore(ctx, 'podman', 'pwv');
    try {
      await probe(podmanWarm);
    } catch (e2) {
      if (isAborted()) throw e2;
      throw new Error(`podman does not run here with overlay (${why}) nor with vfs (${(e2 as Error).message})`);
    }
  }
  log(`podman storage: ${ctx.podmanDriver}`);

  // hoist's warm store; the first run (untimed) unpacks whatever hoist unpacks lazily.
  const hoistWarm = await newStore(ctx, 'hoist', 'hw');
  const preFailed: Partial<Record<ToolName, string>> = {};
  try {
    await load(hoistWarm, small, 'latest', SMALL_NAME);
    const err = await sanity(hoistWarm, SMALL_NAME);
    if (err !== undefined) preFailed.hoist = `warm-up: ${err}`;
  } catch (e) {
    if (isAborted()) throw e;
    preFailed.hoist = `warm-up: ${(e as Error).message}`;
  }
  if (preFailed.hoist !== undefined) log(`hoist warm-up FAILED: ${preFailed.hoist}`);

  const scenarios: ScenarioResult[] = [];
  log('warm run…');
  const warmStores: Record<ToolName, Store> = { hoist: hoistWarm, podman: podmanWarm };
  scenarios.push(await scenario('warm', '`run --rm --network none busybox true`, image unpacked', WARM_TARGET, runs,
    (tool) => timedRun(ctx, warmStores[tool], SMALL_NAME), preFailed));

  log('first run of a fresh ~270 MiB image…');
  let n = 0;
  // Load + first run of the same attempts, for reference: podman unpacks in pull, so this is the like-for-like sum.
  const loadPlusRun: Record<ToolName, number[]> = { hoist: [], podman: [] };
  const bigLabel = `${fmt(bigInfo.bytes / 1024 / 1024, 0)} MiB image (${bigInfo.layers} layers)`;
  const first = await scenario('first', `first \`run --rm … true\` of a freshly loaded ${bigLabel}`,
    FIRST_TARGET, runs, async (tool) => {
      const store = await newStore(ctx, tool, `${tool[0]}${n++}`);
      try {
        const l = (await load(store, big, BIG_REF, BIG_NAME, ctx.rssFile))!;
        const t = await timedRun(ctx, store, BIG_NAME);
        // Untimed: the container saw the image's top layer and a big lower layer.
        const seen = await untimed(store, runArgs(BIG_NAME, ['sh', '-c', 'test -s /data/random-7.bin && cat /etc/hoist-bench']));
        if (!seen.startsWith('amd64 ')) throw new Error(`${tool}: the container does not see the image's files (got ${JSON.stringify(seen)})`);
        loadPlusRun[tool].push(l.seconds + t.seconds);
        return t;
      } finally {
        await store.destroy();
      }
    });
  scenarios.push(first);
  // The same attempts as the first-run row (its errors are listed there).
  const sum = (tool: ToolName): ToolResult => {
    const xs = loadPlusRun[tool];
    return { seconds: xs, maxRssKiB: [], median: xs.length > 0 ? median(xs) : null, errors: [], failed: first[tool].failed };
  };
  const sumHoist = sum('hoist');
  const sumPodman = sum('podman');
  scenarios.push({
    key: 'load-and-first',
    label: `load (\`hoist copy\` / \`podman pull\`) + first run, same ${bigLabel}, for reference`,
    target: null,
    hoist: sumHoist,
    podman: sumPodman,
    ratio: sumHoist.median !== null && sumPodman.median !== null ? sumHoist.median / sumPodman.median : null,
    pass: null,
  });

  const peak = (r: ToolResult): number | null => (r.maxRssKiB.length > 0 ? mib(Math.max(...r.maxRssKiB)) : null);
  const lines = [
    `hoist vs ${podmanVersion} (rootless, runc, ${ctx.podmanDriver} storage), ${runs} runs each, node ${process.version}, user ${process.env['USER'] ?? process.getuid?.()}`,
    '',
    table(scenarios),
    '',
    `peak RSS of the timed process (GNU time %M), warm run: hoist ${fmt(peak(scenarios[0]!.hoist) ?? NaN, 0)} MiB, podman ${fmt(peak(scenarios[0]!.podman) ?? NaN, 0)} MiB`,
    'both unpack layers while loading (`podman pull`, `hoist copy`; untimed in the first-run row, counted in load + first).',
  ];
  const failures = scenarios.flatMap((s) => TOOLS.flatMap((t) => s[t].errors.map((e) => `- ${s.key} ${t}: ${e}`)));
  if (failures.length > 0) lines.push('', 'Errors:', ...failures);
  process.stdout.write(`${lines.join('\n')}\n`);

  await writeFile(out, `${JSON.stringify({
    date: new Date().toISOString(),
    runs,
    node: process.version,
    podman: podmanVersion,
    user: { name: process.env['USER'] ?? null, uid: process.getuid?.() ?? null },
    commands: {
      hoist: `node cmd/hoist.mjs ${runArgs('IMG', ['true']).join(' ')}`,
      podman: `podman ${podmanGlobal('DIR', ctx.podmanDriver).join(' ')} ${runArgs('IMG', ['true']).join(' ')}`,
    },
    podmanStorage: { driver: ctx.podmanDriver, note: podmanStorageNote },
    fixture: { bigImageLayers: bigInfo.layers, bigImageBytes: bigInfo.bytes, bigImageDigest: bigInfo.digest },
    scenarios,
    rss: { scenario: 'warm', hoistPeakMiB: peak(scenarios[0]!.hoist), podmanPeakMiB: peak(scenarios[0]!.podman) },
  }, null, 2)}\n`);
}

/** As root: runs this file again as the unprivileged user, then copies its results into place. */
async function asUser(runs: number, out: string): Promise<void> {
  const user = ciUser();
  if (user === undefined) throw new Error('no unprivileged user to run as: set HOIST_CI_USER or create hoistci (.ci/run does)');
  assertCheckoutReadable(user);
  const tmp = await userTempDir(user, 'hoist-bench-');
  onCleanup(async () => {
    await stopStrays(tmp.dir);
    await tmp.cleanup();
  });
  const { uid, gid } = hostIds(user);
  const childOut = path.join(tmp.dir, 'run.json');
  log(`running as ${user} (uid ${uid}) in ${tmp.dir}`);
  // Straight setuid/setgid from Node (supplementary groups cleared), not runuser: nothing sits between the bench
  // and the tools it times, and signals reach the child directly.
  const child = spawn(process.execPath, [THIS_FILE, '--as-user', '--work', tmp.dir, '--runs', String(runs), '--out', childOut], {
    uid, gid,
    cwd: tmp.dir,
    env: { PATH: USER_PATH, HOME: tmp.dir, USER: user, LOGNAME: user, LANG: 'C.UTF-8', TMPDIR: '/tmp' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  await awaitUserRun(child, user, childOut, out);
  log(`wrote ${out}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results', 'run.json') },
      // Internal: set when the root process re-runs this file as the user.
      'as-user': { type: 'boolean', default: false },
      work: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, got ${values.runs}`);
  requireNode24('npx node or npm run bench:run');
  installSignalHandlers();
  const out = path.resolve(values.out);

  if (isRoot()) {
    await asUser(runs, out);
    return;
  }
  if (values['as-user']) {
    if (values.work === undefined) throw new Error('--as-user needs --work');
    await bench(values.work, runs, out);
    return;
  }
  // Started by a normal user: that user is the rootless user; work in a temp dir of its own.
  await inUserTempDir('run.json', out, (dir, tmpOut) => bench(dir, runs, tmpOut), stopStrays);
  log(`wrote ${out}`);
}

await runBench('bench:run', main);
