#!/usr/bin/env node
/**
 * hoist build vs buildah bud vs BuildKit (dockerd), on one multi-stage Dockerfile, on this machine, no network.
 *
 *   npm run bench:build -- [--runs N] [--out FILE] [--only hoist,buildah,buildkit] [--fs loop|tmp]
 *
 * The fixture (bench/fixtures/build-context.ts, generated into a temp dir at run time): three stages, a context of
 * 5000 source files, RUN steps writing 2000 and 3000 files, COPY --from twice; the base is busybox made by
 * testdata/make-busybox.ts, loaded into each tool's storage before anything is timed (hoist: `hoist copy oci:…`;
 * buildah: `buildah pull oci:…` + tag; docker: `docker load` of a docker-archive written by `hoist copy`).
 *
 * Scenarios (tools alternate; who goes first swaps every run; medians; wall time of the whole client process,
 * each timed run preceded by an untimed `sync`):
 *   cold       build with no build cache (the base image is there): hoist and buildah get a fresh store each run,
 *              BuildKit a freshly started dockerd with a new data root (the base loaded into it);
 *   no-op      the same build again with nothing changed;
 *   changed    one source file appended to, then the build (each tool's previous build is of the previous content).
 * Targets: hoist ≤ 1.0× BuildKit in all three, ≤ 0.5× buildah, hoist's peak RSS (GNU time %M, the largest process
 * of the tree) ≤ 300 MiB.
 *
 * Where (--fs). This machine's root ext4 has no journal, and then ext4's inode allocator skips recently deleted
 * inodes one at a time (recently_deleted() in find_inode_bit: for 60 s after a deletion, longer while the inode
 * table block is dirty): after one tool deletes thousands of files (buildah removes every step's container), the
 * next tool's file creations cost up to ~1 ms of kernel time each, and the comparison turns into noise. So by
 * default (`--fs loop`, as root) everything — context, stores, dockerd's data roots — lives on a scratch ext4 with
 * mkfs.ext4's defaults (journaled, as ext4 normally is) on a loop device, dropped whole at the end. `--fs tmp`
 * works in /tmp instead. Either way nothing is deleted between timed runs (stores go at the end).
 *
 * Who runs what. Run as root (CI and sessions are), the bench starts dockerd itself — only ever with
 * `--bridge none --iptables=false --ip-masq=false --ip6tables=false`, a private socket, data root and exec root
 * (its default bridge would take 172.17.0.0/16; a docker0 link that appears anyway is deleted) and `--group` of the
 * unprivileged user, a new daemon for every cold BuildKit run (asked for over a pipe on fd 3) — and re-runs this
 * file as the rootless CI user (test/helpers/rootless.ts: $HOIST_CI_USER, else hoistci), which times all three
 * clients: hoist rootless (as bench/run.ts), buildah rootless (`--storage-driver overlay`: native kernel overlay in
 * the user namespace; vfs if overlay fails, said in the results) and the docker CLI (20.10, DOCKER_BUILDKIT=1)
 * talking to the root daemon. RUN steps use the host network (`--network host`): hoist's default, and neither
 * buildah nor BuildKit can set up its default network here without a bridge. Run as a normal user, BuildKit is
 * skipped (no dockerd) and the bench works in /tmp. The bench installs nothing: buildah and (for BuildKit)
 * docker.io must be installed.
 * Results: a markdown table on stdout and bench/results/build.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeBusyboxImage } from '../testdata/make-busybox.ts';
import { run as runCmd } from '../test/helpers/run.ts';
import { assertCheckoutReadable, ciUser, hostIds, isRoot, removeTree, USER_PATH } from '../test/helpers/rootless.ts';
import { changeOneFile, CHANGED_FILE, makeBuildContext, SOURCE_FILES } from './fixtures/build-context.ts';
import { inUserTempDir, requireNode24, runBench, awaitUserRun,
  AbortedError, alternateRuns, dropCleanup, fmt, installSignalHandlers, isAborted, medianCell, mib, onCleanup, runTool,
  type ToolResult, type ToolRun,
  hoistBin, storeEnv,
} from './lib.ts';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOIST = await hoistBin(path.join(REPO_ROOT, 'cmd', 'hoist.mjs'));
const THIS_FILE = fileURLToPath(import.meta.url);
const BUILDAH = '/usr/bin/buildah';
const DOCKER = '/usr/bin/docker'; // Debian's 20.10 client: the one that matches the daemon (not a newer one on PATH)
const DOCKERD = '/usr/sbin/dockerd';
const BASE = 'localhost/bench-busybox:latest';
const APP = 'localhost/bench-app:latest';
const BUILDKIT_TARGET = 1.0;
const BUILDAH_TARGET = 0.5;
const RSS_TARGET_MIB = 300;

type ToolName = 'hoist' | 'buildkit' | 'buildah';
const ALL_TOOLS: readonly ToolName[] = ['hoist', 'buildkit', 'buildah'];

interface ScenarioResult {
  key: string;
  label: string;
  results: Record<ToolName, ToolResult>;
  /** hoist / peer median ratios. */
  vsBuildkit: number | null;
  vsBuildah: number | null;
  passBuildkit: boolean | null;
  passBuildah: boolean | null;
}

/** One tool's storage: everything it writes lives under `dir` (BuildKit's lives in the daemon). */
interface Store {
  tool: ToolName;
  dir: string;
  env: NodeJS.ProcessEnv;
  cmd: string;
  /** Arguments before the subcommand: buildah's storage flags, hoist's CLI path, docker's -H. */
  prefix: string[];
  /** Removes the store now (the bench leaves that to the end: see the module comment). */
  destroy: () => Promise<void>;
}

interface Ctx {
  work: string;
  rssFile: string;
  compileCache: string;
  contextDir: string;
  busyboxOci: string;
  dockerArchive: string;
  dockerSock: string | undefined;
  /** Asks the root process for a fresh dockerd; gives its socket. */
  freshDockerd: (() => Promise<string>) | undefined;
  buildahDriver: 'overlay' | 'vfs';
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

function buildahGlobal(dir: string, driver: string): string[] {
  return ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'rr'), '--storage-driver', driver];
}

let storeSeq = 0;
/** On the scratch filesystem stores are not removed one by one: the filesystem goes as a whole. */
let onScratch = false;

async function newStore(ctx: Ctx, tool: ToolName): Promise<Store> {
  if (isAborted()) throw new AbortedError();
  const dir = path.join(ctx.work, `${tool[0]}${storeSeq++}`);
  const env: NodeJS.ProcessEnv = {
    ...(await storeEnv(dir)),
    ...(tool === 'hoist' ? { HOIST_ROOT: path.join(dir, 'root'), NODE_COMPILE_CACHE: ctx.compileCache } : {}),
    ...(tool === 'buildkit' ? { DOCKER_CONFIG: path.join(dir, 'home', '.docker'), DOCKER_BUILDKIT: '1' } : {}),
  };
  const destroy = async (): Promise<void> => {
    dropCleanup(destroy);
    await removeTree(dir);
  };
  if (!onScratch) onCleanup(destroy);
  if (tool === 'hoist') return { tool, dir, env, cmd: HOIST.cmd, prefix: HOIST.prefix, destroy };
  if (tool === 'buildah') return { tool, dir, env, cmd: BUILDAH, prefix: buildahGlobal(dir, ctx.buildahDriver), destroy };
  return { tool, dir, env, cmd: DOCKER, prefix: ['-H', `unix://${ctx.dockerSock!}`], destroy };
}

/** An untimed command in a store; throws with its stderr on a non-zero exit. */
async function untimed(store: Store, args: string[]): Promise<string> {
  if (isAborted()) throw new AbortedError();
  const r = await runCmd(store.cmd, [...store.prefix, ...args], { env: store.env });
  if (isAborted()) throw new AbortedError();
  if (r.code !== 0) throw new Error(`${store.tool} ${args.join(' ')} exited with ${r.code}: ${r.stderr.trim().split('\n').slice(-5).join('\n') || '(no stderr)'}`);
  return r.stdout;
}

/** Puts the busybox base into the store under BASE (untimed). */
async function loadBase(ctx: Ctx, store: Store): Promise<void> {
  if (store.tool === 'hoist') {
    await untimed(store, ['copy', '-q', `oci:${ctx.busyboxOci}:latest`, BASE]);
  } else if (store.tool === 'buildah') {
    const id = (await untimed(store, ['pull', '-q', `oci:${ctx.busyboxOci}:latest`])).trim().split('\n').pop()!;
    await untimed(store, ['tag', id, BASE]);
  } else {
    await untimed(store, ['load', '-q', '-i', ctx.dockerArchive]);
  }
}

function buildArgs(tool: ToolName, ctx: Ctx): string[] {
  switch (tool) {
    case 'hoist': return ['build', '-q', '-t', APP, ctx.contextDir];
    case 'buildah': return ['bud', '-q', '--runtime', 'runc', '--layers', '--pull=never', '--network', 'host', '-t', APP, ctx.contextDir];
    case 'buildkit': return ['build', '-q', '--network', 'host', '-t', APP, ctx.contextDir];
  }
}

/**
 * One timed build. `sync` first (untimed): the previous run's dirty data (another tool's, often) is written back
 * now rather than during this run, and the inode table blocks of what it deleted stop counting as dirty, which
 * shortens the time ext4 skips those inodes when allocating (see the module comment).
 */
async function timedBuild(ctx: Ctx, store: Store): Promise<ToolRun> {
  await runCmd('sync', []);
  return runTool(store.cmd, [...store.prefix, ...buildArgs(store.tool, ctx)], { env: store.env, rssFile: ctx.rssFile });
}

/** BuildKit's cold start: a new dockerd with an empty data root (the store's docker prefix follows it). */
async function freshBuildkit(ctx: Ctx, store: Store): Promise<void> {
  if (ctx.freshDockerd === undefined) throw new Error('no dockerd to restart');
  ctx.dockerSock = await ctx.freshDockerd();
  store.prefix = ['-H', `unix://${ctx.dockerSock}`];
}

/**
 * The user side of the control pipe (fd 3) to the root process: `fresh` → `ok SOCKET` or `err MESSAGE`.
 */
async function dockerControl(): Promise<() => Promise<string>> {
  const net = await import('node:net');
  const sock = new net.Socket({ fd: 3, readable: true, writable: true });
  sock.setEncoding('utf8');
  let buf = '';
  const waiting: Array<(line: string) => void> = [];
  sock.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(line);
      // Held open only while an answer is awaited, so the pipe never keeps the process alive by itself.
      if (waiting.length === 0) sock.unref();
    }
  });
  sock.unref();
  return () => new Promise<string>((resolve, reject) => {
    waiting.push((line) => (line.startsWith('ok ') ? resolve(line.slice(3)) : reject(new Error(line.replace(/^err /, '')))));
    sock.ref();
    sock.write('fresh\n');
  });
}

/**
 * The built image really is the Dockerfile's: its CMD prints the number of source files the build stage saw (the
 * .dockerignore'd file left out). Untimed; the error, or undefined.
 */
async function sanity(store: Store): Promise<string | undefined> {
  try {
    let out: string;
    if (store.tool === 'hoist') {
      out = await untimed(store, ['run', '--rm', '--network', 'none', APP]);
    } else if (store.tool === 'buildkit') {
      out = await untimed(store, ['run', '--rm', '--network', 'none', APP]);
    } else {
      const ctr = (await untimed(store, ['from', '--pull=never', '-q', APP])).trim();
      try {
        out = await untimed(store, ['run', '--runtime', 'runc', '--network', 'host', ctr, 'cat', '/app/out/count']);
      } finally {
        await untimed(store, ['rm', ctr]).catch(() => {});
      }
    }
    return out.trim() === String(SOURCE_FILES) ? undefined : `${store.tool}: the built image's CMD printed ${JSON.stringify(out.trim())}, not ${SOURCE_FILES}`;
  } catch (e) {
    if (isAborted()) throw e;
    return (e as Error).message;
  }
}

function ratio(a: ToolResult, b: ToolResult): number | null {
  return a.median !== null && b.median !== null ? a.median / b.median : null;
}

async function scenario(
  key: string, label: string, tools: readonly ToolName[], runs: number,
  once: (tool: ToolName, i: number) => Promise<ToolRun>,
  preFailed: Partial<Record<ToolName, string>>,
): Promise<ScenarioResult> {
  const res = await alternateRuns(key, tools, runs, once, preFailed);
  const empty = (): ToolResult => ({ seconds: [], maxRssKiB: [], median: null, errors: [], failed: false });
  const results = { hoist: res.hoist ?? empty(), buildkit: res.buildkit ?? empty(), buildah: res.buildah ?? empty() } as Record<ToolName, ToolResult>;
  for (const t of ALL_TOOLS) {
    if (!tools.includes(t) && preFailed[t] !== undefined) {
      results[t].errors.push(preFailed[t]!);
      results[t].failed = true;
    }
  }
  const vsBuildkit = ratio(results.hoist, results.buildkit);
  const vsBuildah = ratio(results.hoist, results.buildah);
  const ok = !results.hoist.failed;
  return {
    key, label, results, vsBuildkit, vsBuildah,
    passBuildkit: vsBuildkit === null ? null : ok && vsBuildkit <= BUILDKIT_TARGET,
    passBuildah: vsBuildah === null ? null : ok && vsBuildah <= BUILDAH_TARGET,
  };
}

function table(scenarios: ScenarioResult[]): string {
  const cell = (r: number | null, target: number, pass: boolean | null): string => (r === null ? '—' : `${fmt(r, 2)}× (≤ ${target.toFixed(1)}× ${pass ? 'PASS' : 'MISS'})`);
  const lines = [
    '| scenario | hoist s | BuildKit s | buildah s | hoist/BuildKit | hoist/buildah |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const s of scenarios) {
    lines.push(`| ${s.label} | ${medianCell(s.results.hoist)} | ${medianCell(s.results.buildkit)} | ${medianCell(s.results.buildah)} | `
      + `${cell(s.vsBuildkit, BUILDKIT_TARGET, s.passBuildkit)} | ${cell(s.vsBuildah, BUILDAH_TARGET, s.passBuildah)} |`);
  }
  return lines.join('\n');
}

/** The whole benchmark, as the unprivileged user. Writes the results JSON to `out`. */
async function bench(
  work: string, runs: number, out: string, only: readonly ToolName[], dockerSock: string | undefined, dockerNote: string | undefined,
  control: boolean, fsNote: string,
): Promise<void> {
  const ctx: Ctx = {
    work, rssFile: path.join(work, 'rss'), compileCache: path.join(work, 'node-compile-cache'),
    contextDir: path.join(work, 'context'), busyboxOci: path.join(work, 'busybox-oci'), dockerArchive: path.join(work, 'busybox.docker.tar'),
    dockerSock, freshDockerd: control ? await dockerControl() : undefined, buildahDriver: 'overlay',
  };
  const preFailed: Partial<Record<ToolName, string>> = {};
  for (const t of ALL_TOOLS) if (!only.includes(t)) preFailed[t] = 'not selected (--only)';
  if (dockerSock === undefined && preFailed.buildkit === undefined) preFailed.buildkit = dockerNote ?? 'no dockerd';

  const versions: Record<string, string> = { node: process.version };
  if (preFailed.buildah === undefined) {
    versions['buildah'] = (await runCmd(BUILDAH, ['--version']).catch(() => ({ stdout: '' }))).stdout.trim();
    if (versions['buildah'] === '') preFailed.buildah = `${BUILDAH} does not run: install buildah (apt-get install buildah); the bench installs nothing`;
  }

  log('making the fixture (busybox base; a 5000-file context)…');
  await makeBusyboxImage(ctx.busyboxOci, 'latest');
  const files = await makeBuildContext(ctx.contextDir, BASE);
  log(`context: ${files} files in ${ctx.contextDir}`);

  // hoist's warm-up also writes the docker-archive of the base for `docker load`.
  const stores: Partial<Record<ToolName, Store>> = {};
  const warm = async (tool: ToolName): Promise<void> => {
    const s = await newStore(ctx, tool);
    await loadBase(ctx, s);
    await timedBuild(ctx, s);
    const err = await sanity(s);
    if (err !== undefined) throw new Error(err);
    stores[tool] = s;
  };
  const hoistArchive = async (): Promise<void> => {
    const s = await newStore(ctx, 'hoist');
    await untimed(s, ['copy', '-q', `oci:${ctx.busyboxOci}:latest`, `docker-archive:${ctx.dockerArchive}:${BASE}`]);
  };
  if (preFailed.buildkit === undefined) {
    try {
      await hoistArchive();
      const s = await newStore(ctx, 'buildkit');
      versions['docker'] = (await untimed(s, ['version', '--format', '{{.Server.Version}} (server), {{.Client.Version}} (client)'])).trim();
      if (ctx.freshDockerd === undefined) preFailed.buildkit = 'no control pipe to start a fresh dockerd per cold run';
    } catch (e) {
      if (isAborted()) throw e;
      preFailed.buildkit = `docker does not answer: ${(e as Error).message}`;
    }
  }
  // Untimed warm-up builds: fill hoist's compile cache and the page cache, and check each tool's image once.
  let buildahNote = 'rootless, native overlay (kernel overlayfs in the user namespace)';
  for (const tool of ALL_TOOLS) {
    if (preFailed[tool] !== undefined) continue;
    log(`warm-up build: ${tool}…`);
    try {
      await warm(tool);
    } catch (e) {
      if (isAborted()) throw e;
      const why = (e as Error).message;
      if (tool === 'buildah') {
        log(`buildah with overlay storage failed (${why}); trying vfs`);
        ctx.buildahDriver = 'vfs';
        buildahNote = `rootless, vfs: overlay failed here: ${why}`;
        try {
          await warm(tool);
          continue;
        } catch (e2) {
          if (isAborted()) throw e2;
          preFailed.buildah = `warm-up: overlay: ${why}; vfs: ${(e2 as Error).message}`;
        }
      } else {
        preFailed[tool] = `warm-up: ${why}`;
      }
      log(`${tool} warm-up FAILED: ${preFailed[tool]}`);
    }
  }
  const tools = ALL_TOOLS.filter((t) => preFailed[t] === undefined);

  const scenarios: ScenarioResult[] = [];
  log('cold builds…');
  const last: Partial<Record<ToolName, Store>> = {};
  scenarios.push(await scenario('cold', 'cold build (base image present, no build cache)', tools, runs, async (tool) => {
    // The previous store stays until the end (no deletions between timed runs).
    const s = await newStore(ctx, tool);
    last[tool] = s;
    if (tool === 'buildkit') await freshBuildkit(ctx, s);
    await loadBase(ctx, s);
    return timedBuild(ctx, s);
  }, preFailed));

  // The next scenarios build on each tool's last cold build; a tool whose cold builds all failed is skipped.
  const after = (key: string): Partial<Record<ToolName, string>> => {
    const f = { ...preFailed };
    for (const t of tools) if (last[t] === undefined || scenarios[0]!.results[t].median === null) f[t] ??= `no ${key}: the cold build failed`;
    return f;
  };
  log('no-op rebuilds…');
  const noopPre = after('no-op rebuild');
  scenarios.push(await scenario('noop', 'no-op rebuild (nothing changed)', tools.filter((t) => noopPre[t] === undefined), runs,
    (tool) => timedBuild(ctx, last[tool]!), noopPre));

  log(`rebuilds after one changed file (${CHANGED_FILE})…`);
  let change = 0;
  const changedPre = after('rebuild');
  scenarios.push(await scenario('changed', `rebuild after one source file changed`, tools.filter((t) => changedPre[t] === undefined), runs, async (tool) => {
    await changeOneFile(ctx.contextDir, ++change);
    return timedBuild(ctx, last[tool]!);
  }, changedPre));

  // The last build of each tool still gives the right image.
  const sanityErrors: string[] = [];
  for (const t of tools) {
    if (last[t] === undefined) continue;
    const err = await sanity(last[t]!);
    if (err !== undefined) sanityErrors.push(`${t} after the changed rebuilds: ${err}`);
  }

  const hoistRss = scenarios.flatMap((s) => s.results.hoist.maxRssKiB);
  const peakMiB = hoistRss.length > 0 ? mib(Math.max(...hoistRss)) : null;
  const rssPass = peakMiB === null ? null : peakMiB <= RSS_TARGET_MIB;
  const lines = [
    `hoist vs BuildKit (${versions['docker'] ?? 'not run'}) vs ${versions['buildah'] ?? 'buildah: not run'} (${buildahNote}), ${runs} runs each, node ${process.version}, user ${process.env['USER'] ?? process.getuid?.()}, on ${fsNote}`,
    '',
    table(scenarios),
    '',
    `hoist peak RSS (GNU time %M, largest process, all runs): ${fmt(peakMiB ?? NaN, 0)} MiB (≤ ${RSS_TARGET_MIB} MiB ${rssPass ? 'PASS' : 'MISS'})`,
  ];
  const failures = [...new Set(scenarios.flatMap((s) => ALL_TOOLS.flatMap((t) => s.results[t].errors.map((e) => `- ${s.key} ${t}: ${e}`))))];
  if (failures.length > 0 || sanityErrors.length > 0) lines.push('', 'Errors:', ...failures, ...sanityErrors.map((e) => `- sanity: ${e}`));
  process.stdout.write(`${lines.join('\n')}\n`);

  const cmdLine = (tool: ToolName): string => {
    const a = buildArgs(tool, { ...ctx, contextDir: 'CONTEXT' }).join(' ');
    if (tool === 'hoist') return `node cmd/hoist.mjs ${a}`;
    if (tool === 'buildah') return `buildah ${buildahGlobal('DIR', ctx.buildahDriver).join(' ')} ${a}`;
    return `DOCKER_BUILDKIT=1 docker -H unix://SOCK ${a}`;
  };
  await writeFile(out, `${JSON.stringify({
    date: new Date().toISOString(),
    runs,
    versions,
    user: { name: process.env['USER'] ?? null, uid: process.getuid?.() ?? null },
    commands: { hoist: cmdLine('hoist'), buildah: cmdLine('buildah'), buildkit: cmdLine('buildkit') },
    buildah: { driver: ctx.buildahDriver, note: buildahNote },
    filesystem: fsNote,
    buildkit: dockerSock !== undefined ? 'dockerd 20.10 started by the bench as root: --bridge none --iptables=false --ip-masq=false, private socket/data-root/exec-root' : (dockerNote ?? null),
    fixture: { sourceFiles: SOURCE_FILES, contextFiles: files, changedFile: CHANGED_FILE, dockerfile: (await readFile(path.join(ctx.contextDir, 'Dockerfile'), 'utf8')) },
    scenarios,
    rss: { hoistPeakMiB: peakMiB, targetMiB: RSS_TARGET_MIB, pass: rssPass },
    sanityErrors,
  }, null, 2)}\n`);
}

// ---- dockerd, as root ----

interface Daemon {
  sock: string;
  stop: () => Promise<void>;
}

async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => m !== undefined)
    .map((m) => m.replace(/\\(\d{3})/g, (_s, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

async function deleteDocker0(): Promise<void> {
  const r = await runCmd('ip', ['link', 'show', 'docker0']).catch(() => ({ code: 1 }));
  if (r.code === 0) {
    log('a docker0 link appeared: deleting it');
    await runCmd('ip', ['link', 'delete', 'docker0']).catch(() => {});
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/**
 * Starts dockerd with everything private under a new temp dir, its socket owned by `user`'s group. Never the
 * default bridge. Resolves once the daemon answers; `stop` ends it (and the containerd it started), by pid.
 */
async function startDockerd(user: string, base: string): Promise<Daemon> {
  const dir = await mkdtemp(path.join(base, 'dk-'));
  await chmod(dir, 0o711);
  const sock = path.join(dir, 'docker.sock');
  const { gid } = hostIds(user);
  const logFile = path.join(dir, 'dockerd.log');
  const args = [
    '--bridge', 'none', '--iptables=false', '--ip-masq=false', '--ip6tables=false',
    '--host', `unix://${sock}`, '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'exec'),
    '--pidfile', path.join(dir, 'dockerd.pid'), '--group', String(gid), '--log-level', 'warn',
  ];
  const { openSync, closeSync } = await import('node:fs');
  const fd = openSync(logFile, 'a');
  const child = spawn(DOCKERD, args, { stdio: ['ignore', fd, fd], env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } });
  closeSync(fd);
  // Registered first so that it runs after stop (cleanups run last-registered first): at the very end.
  onCleanup(async () => {
    for (const m of (await mountsUnder(dir)).reverse()) await runCmd('umount', ['-l', m]).catch(() => {});
    if (scratchMount === undefined) await rm(dir, { recursive: true, force: true }).catch((e: Error) => log(`removing ${dir}: ${e.message}`));
  });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const containerdPid = Number((await readFile(path.join(dir, 'exec', 'containerd', 'containerd.pid'), 'utf8').catch(() => '')).trim());
    child.kill('SIGTERM');
    if (!(await waitExit(child, 20000))) {
      child.kill('SIGKILL');
      await waitExit(child, 5000);
    }
    if (Number.isInteger(containerdPid) && containerdPid > 1 && alive(containerdPid)) {
      process.kill(containerdPid, 'SIGTERM');
      for (let i = 0; i < 100 && alive(containerdPid); i++) await new Promise((r) => setTimeout(r, 50));
      if (alive(containerdPid)) process.kill(containerdPid, 'SIGKILL');
    }
    await deleteDocker0();
  };
  onCleanup(stop);
  const deadline = Date.now() + 60000;
  for (;;) {
    if (child.exitCode !== null) {
      const text = await readFile(logFile, 'utf8').catch(() => '');
      throw new Error(`dockerd exited with ${child.exitCode}: ${text.trim().split('\n').slice(-3).join(' | ')}`);
    }
    if (existsSync(sock)) {
      const r = await runCmd(DOCKER, ['-H', `unix://${sock}`, 'version', '--format', '{{.Server.Version}}']).catch(() => ({ code: 1 }));
      if (r.code === 0) break;
    }
    if (Date.now() > deadline) throw new Error('dockerd did not answer within 60 s');
    await new Promise((r) => setTimeout(r, 200));
  }
  await deleteDocker0();
  return { sock, stop };
}

/**
 * Serves the user process's requests for a fresh dockerd on its fd 3: stops the current one (its data root stays
 * until the end: no deletions between timed runs) and starts another.
 */
function serveDockerd(pipe: import('node:stream').Duplex, user: string, base: string, first: Daemon): void {
  let current = first;
  let buf = '';
  let queue = Promise.resolve();
  pipe.setEncoding('utf8');
  pipe.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line !== 'fresh') continue;
      queue = queue.then(async () => {
        try {
          await current.stop();
          current = await startDockerd(user, base);
          pipe.write(`ok ${current.sock}\n`);
        } catch (e) {
          pipe.write(`err ${(e as Error).message.replace(/\n/g, ' ')}\n`);
        }
      });
    }
  });
  pipe.on('error', () => {});
}

/** As root: starts dockerd (when installed), runs this file again as the unprivileged user, copies its results. */
/**
 * A scratch ext4 filesystem (journaled, mkfs.ext4's defaults) on a loop device, for everything the bench writes:
 * this machine's root ext4 has no journal, and there the inode allocator skips recently deleted inodes one by one
 * (see the module comment), so one tool's deletions slow the next tool's file creations for half a minute or more
 * and the comparison turns into noise. Gives the mount point; the cleanup unmounts it and removes the image.
 */
/** Set once the bench works on its scratch filesystem: what is on it goes with it, nothing is deleted file by file. */
let scratchMount: string | undefined;

async function scratchFs(sizeGiB: number): Promise<string> {
  // Lower-case names all the way down: buildah names an image pulled from `oci:PATH` after PATH, and wants no capitals.
  // Short: dockerd's containerd puts unix sockets under the exec root, and a socket path has at most 107 bytes.
  const dir = path.join('/var/tmp', `hbf-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  await chmod(dir, 0o711); // the user reaches its directory on the mount through it
  const image = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'm');
  await mkdir(mnt);
  const must = async (cmd: string, args: string[]): Promise<void> => {
    const r = await runCmd(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  };
  await must('truncate', ['-s', `${sizeGiB}G`, image]);
  await must('mkfs.ext4', ['-q', '-F', image]);
  await must('mount', ['-o', 'loop', image, mnt]);
  onCleanup(async () => {
    for (const m of (await mountsUnder(mnt)).reverse()) await runCmd('umount', ['-l', m]).catch(() => {});
  });
  await chmod(mnt, 0o755);
  scratchMount = mnt;
  return mnt;
}

/** A directory for `user` under `base` (0700, owned by the user). */
async function userDir(user: string, base: string, prefix: string): Promise<string> {
  const dir = path.join(base, `${prefix}${randomBytes(6).toString('hex')}`);
  await mkdir(dir, { mode: 0o700 });
  const { uid, gid } = hostIds(user);
  await chown(dir, uid, gid);
  return dir;
}

async function asUser(runs: number, out: string, only: string, fsKind: 'loop' | 'tmp'): Promise<void> {
  const user = ciUser();
  if (user === undefined) throw new Error('no unprivileged user to run as: set HOIST_CI_USER or create hoistci (.ci/run does)');
  assertCheckoutReadable(user);
  let base = '/tmp';
  let fsNote = 'the root filesystem (/tmp)';
  if (fsKind === 'loop') {
    base = await scratchFs(16);
    fsNote = 'a scratch journaled ext4 on a loop device (see scratchFs)';
  }
  log(`working on ${fsNote}: ${base}`);
  let daemon: Daemon | undefined;
  let dockerNote: string | undefined;
  if (!only.split(',').includes('buildkit')) {
    dockerNote = 'not selected (--only)';
  } else if (!existsSync(DOCKERD) || !existsSync(DOCKER)) {
    dockerNote = `BuildKit skipped: ${DOCKERD} / ${DOCKER} not installed (apt-get install docker.io; the bench installs nothing)`;
  } else {
    log('starting dockerd (--bridge none, private socket and roots)…');
    try {
      daemon = await startDockerd(user, base);
    } catch (e) {
      if (isAborted()) throw e;
      dockerNote = `BuildKit skipped: ${(e as Error).message}`;
    }
  }
  if (dockerNote !== undefined) log(dockerNote);
  const work = await userDir(user, base, 'hoist-bench-');
  // Removed as the user (files of subordinate ids inside); on the scratch filesystem the unmount drops it anyway.
  if (fsKind !== 'loop') onCleanup(() => removeTree(work).catch(() => runCmd('rm', ['-rf', work]).then(() => {})));
  const { uid, gid } = hostIds(user);
  const childOut = path.join(work, 'build.json');
  log(`running as ${user} (uid ${uid}) in ${work}`);
  const child = spawn(process.execPath, [
    THIS_FILE, '--as-user', '--work', work, '--runs', String(runs), '--out', childOut, '--only', only, '--fs-note', fsNote,
    ...(fsKind === 'loop' ? ['--scratch'] : []),
    ...(daemon ? ['--docker-sock', daemon.sock, '--docker-control'] : []), ...(dockerNote ? ['--docker-note', dockerNote] : []),
  ], {
    uid, gid,
    cwd: work,
    env: { PATH: USER_PATH, HOME: work, USER: user, LOGNAME: user, LANG: 'C.UTF-8', TMPDIR: work },
    stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
  });
  if (daemon) serveDockerd(child.stdio[3] as import('node:stream').Duplex, user, base, daemon);
  await awaitUserRun(child, user, childOut, out);
  log(`wrote ${out}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results', 'build.json') },
      only: { type: 'string', default: ALL_TOOLS.join(',') },
      // Internal: set when the root process re-runs this file as the user.
      'as-user': { type: 'boolean', default: false },
      work: { type: 'string' },
      'docker-sock': { type: 'string' },
      'docker-note': { type: 'string' },
      'docker-control': { type: 'boolean', default: false },
      // Where the bench works: 'loop' (a scratch journaled ext4, as root; the default) or 'tmp' (/tmp as it is).
      fs: { type: 'string', default: 'loop' },
      'fs-note': { type: 'string' },
      scratch: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, got ${values.runs}`);
  const only = values.only.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = only.filter((t) => !(ALL_TOOLS as readonly string[]).includes(t));
  if (bad.length > 0 || only.length === 0) throw new Error(`--only ${values.only}: use a comma-separated subset of ${ALL_TOOLS.join(',')}`);
  requireNode24('npm run bench:build');
  installSignalHandlers();
  const out = path.resolve(values.out);

  if (values.fs !== 'loop' && values.fs !== 'tmp') throw new Error(`--fs ${values.fs}: use loop or tmp`);
  if (isRoot()) {
    await asUser(runs, out, only.join(','), values.fs);
    return;
  }
  if (values['as-user']) {
    if (values.work === undefined) throw new Error('--as-user needs --work');
    onScratch = values.scratch;
    await bench(values.work, runs, out, only as ToolName[], values['docker-sock'], values['docker-note'], values['docker-control'], values['fs-note'] ?? '');
    return;
  }
  // Started by a normal user: no dockerd (it needs root); that user is the rootless user.
  await inUserTempDir('build.json', out, (dir, tmpOut) => bench(dir, runs, tmpOut, only as ToolName[], undefined,
    'BuildKit skipped: not root, so no dockerd to start', false, 'the root filesystem (/tmp; not root, so no scratch filesystem)'));
  log(`wrote ${out}`);
}

await runBench('bench:build', main);
