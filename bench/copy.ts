#!/usr/bin/env node
/**
 * hoist vs skopeo on registry-to-registry copies, all on 127.0.0.1 with two local docker-registry instances.
 *
 *   npm run bench:copy -- [--runs N] [--out FILE]
 *
 * Registry A holds the fixture (bench/fixture.ts: a 10-layer image of ~256 MiB and a two-platform index), pushed
 * with skopeo so hoist's writer is not involved in making it. Each scenario alternates the tools (the one going
 * first swaps every run, so neither always gets the warmer page cache) and reports medians:
 *   cold copy        A → a freshly started, empty B (a wiped B per run: distribution keeps blobs globally, so a
 *                    fresh repository name on a used B would still let the tools skip uploads);
 *   nothing to do    A → a B that already has everything;
 *   cross-repo       A/bench/img → A/bench/<fresh name>: blob mounts apply;
 *   inspect          `inspect docker://A/bench/img:1`;
 *   index cold copy  the two-platform index → an empty B.
 * Wall time covers the whole process (startup included). hoist's peak RSS comes from GNU time's %M over the cold
 * copies. Every copy is checked afterwards: the destination must serve the source's manifest digest.
 * Results: a markdown table on stdout and bench/results/copy.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.ts';
import { digestBytes } from '../src/oci/digest.ts';
import { makeCopyFixture } from './fixture.ts';
import { requireNode24, runBench, AbortedError, alternateRuns, dropCleanup, fmt, installSignalHandlers, isAborted, medianCell, mib, onCleanup, runTool, tempDir, track, type ToolResult, type ToolRun,
  hoistBin,
} from './lib.ts';

const exec = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOIST = await hoistBin(path.join(REPO_ROOT, 'cmd', 'hoist.mjs')); // the bin, as `npx hoist` runs it (minus npx's own start)
const SKOPEO = '/usr/bin/skopeo';
const SKOPEO_TLS = ['--src-tls-verify=false', '--dest-tls-verify=false'];
const RSS_TARGET_MIB = 150;

type ToolName = 'hoist' | 'skopeo';
const TOOLS: readonly ToolName[] = ['hoist', 'skopeo'];


interface ScenarioResult {
  key: string;
  label: string;
  /** hoist/skopeo upper bound on the median ratio; null: reported only. */
  target: number | null;
  hoist: ToolResult;
  skopeo: ToolResult;
  ratio: number | null;
  pass: boolean | null;
}

interface Ctx {
  rssFile: string;
  hoistEnv: NodeJS.ProcessEnv;
  skopeoEnv: NodeJS.ProcessEnv;
}

function command(tool: ToolName, op: 'copy' | 'inspect' | 'version', a?: string, b?: string): [string, string[]] {
  if (tool === 'hoist') {
    if (op === 'copy') return [HOIST.cmd, [...HOIST.prefix, 'copy', '-q', a!, b!]];
    if (op === 'inspect') return [HOIST.cmd, [...HOIST.prefix, 'inspect', a!]];
    return [HOIST.cmd, [...HOIST.prefix, '--version']];
  }
  if (op === 'copy') return [SKOPEO, ['copy', '--all', ...SKOPEO_TLS, '-q', a!, b!]];
  if (op === 'inspect') return [SKOPEO, ['inspect', '--tls-verify=false', a!]];
  return [SKOPEO, ['--version']];
}

function run(ctx: Ctx, tool: ToolName, op: 'copy' | 'inspect' | 'version', a?: string, b?: string): Promise<ToolRun> {
  const [cmd, args] = command(tool, op, a, b);
  return runTool(cmd, args, { rssFile: ctx.rssFile, env: tool === 'hoist' ? ctx.hoistEnv : ctx.skopeoEnv });
}

/** The digest of the manifest `ref` serves, read with skopeo (an independent reader). */
async function servedDigest(ref: string): Promise<string> {
  const { stdout } = await exec(SKOPEO, ['inspect', '--raw', '--tls-verify=false', ref], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
  return digestBytes(stdout);
}

async function expectDigest(ref: string, want: string): Promise<void> {
  const got = await servedDigest(ref);
  if (got !== want) throw new Error(`${ref} serves manifest ${got}, the source is ${want}`);
}

function freshRegistry(): Promise<{ reg: TestRegistry; stop: () => Promise<void> }> {
  return track(startFreshRegistry());
}

async function startFreshRegistry(): Promise<{ reg: TestRegistry; stop: () => Promise<void> }> {
  if (isAborted()) throw new AbortedError();
  const reg = await startRegistry();
  if (isAborted()) {
    // Cleanup already ran while this registry was starting: nothing else would stop it.
    await reg.stop();
    throw new AbortedError();
  }
  const stop = async () => {
    dropCleanup(stop);
    await reg.stop();
  };
  onCleanup(stop);
  return { reg, stop };
}

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

async function scenario(
  key: string, label: string, target: number | null, runs: number,
  once: (tool: ToolName, i: number) => Promise<ToolRun>,
): Promise<ScenarioResult> {
  const res = await alternateRuns(key, TOOLS, runs, once);
  const ratio = res.hoist.median !== null && res.skopeo.median !== null ? res.hoist.median / res.skopeo.median : null;
  const pass = target === null ? null : ratio !== null && !res.hoist.failed && ratio <= target;
  return { key, label, target, hoist: res.hoist, skopeo: res.skopeo, ratio, pass };
}

function targetCell(s: ScenarioResult): string {
  if (s.target === null) return '—';
  return `≤ ${s.target.toFixed(1)}× ${s.pass ? 'PASS' : 'MISS'}`;
}

function table(scenarios: ScenarioResult[]): string {
  const lines = [
    '| scenario | hoist median s | skopeo median s | ratio | target |',
    '|---|---:|---:|---:|---|',
  ];
  for (const s of scenarios) {
    lines.push(`| ${s.label} | ${medianCell(s.hoist)} | ${medianCell(s.skopeo)} | ${s.ratio === null ? '—' : `${fmt(s.ratio, 2)}×`} | ${targetCell(s)} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      out: { type: 'string', default: path.join(REPO_ROOT, 'bench', 'results', 'copy.json') },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs wants a positive integer, got ${values.runs}`);
  requireNode24('npx node or npm run bench:copy');
  installSignalHandlers();

  const work = await tempDir('hoist-bench-');
  const ctx: Ctx = {
    rssFile: path.join(work, 'rss'),
    // Own store and compile cache, so the bench neither reads nor leaves anything in the user's.
    hoistEnv: { ...process.env, HOIST_ROOT: path.join(work, 'hoist-root'), NODE_COMPILE_CACHE: path.join(work, 'node-compile-cache') },
    skopeoEnv: { ...process.env },
  };
  const skopeoVersion = (await exec(SKOPEO, ['--version'])).stdout.trim();

  log('making the fixture (8 × 32 MiB random layers, 5000-file layer, tiny layer; two-platform index)…');
  const fixture = await makeCopyFixture(path.join(work, 'layout'));
  log(`fixture: ${fixture.layerCount} layers, ${fmt(fixture.imageBytes / 1024 / 1024, 1)} MiB compressed`);
  const { reg: a } = await freshRegistry();
  const imageRef = `docker://${a.host}/bench/img:1`;
  const indexRef = `docker://${a.host}/bench/multi:1`;
  for (const [from, to] of [[fixture.imageRef, imageRef], [fixture.indexRef, indexRef]] as const) {
    await exec(SKOPEO, ['copy', '--all', '--dest-tls-verify=false', '-q', `oci:${fixture.dir}:${from}`, to]);
  }
  await expectDigest(imageRef, fixture.imageDigest);
  await expectDigest(indexRef, fixture.indexDigest);
  log(`registry A ${a.host}: pushed ${imageRef} and ${indexRef}`);

  // Untimed warm-up: fills hoist's compile cache and the page cache for both tools' binaries.
  for (const tool of TOOLS) {
    try {
      await run(ctx, tool, 'inspect', imageRef);
    } catch (e) {
      log(`warm-up ${tool} inspect failed: ${(e as Error).message}`);
    }
  }

  const scenarios: ScenarioResult[] = [];

  log('startup (--version)…');
  scenarios.push(await scenario('startup', 'startup (`--version`, for reference)', null, runs,
    (tool) => run(ctx, tool, 'version')));

  log('inspect…');
  scenarios.push(await scenario('inspect', 'inspect', 1.5, runs, (tool) => run(ctx, tool, 'inspect', imageRef)));

  log('nothing to do…');
  {
    const { reg: b, stop } = await freshRegistry();
    const dst = `docker://${b.host}/bench/img:1`;
    await exec(SKOPEO, ['copy', '--all', ...SKOPEO_TLS, '-q', imageRef, dst]);
    scenarios.push(await scenario('noop', 'copy, nothing to do', 1.0, runs, async (tool) => {
      const t = await run(ctx, tool, 'copy', imageRef, dst);
      await expectDigest(dst, fixture.imageDigest);
      return t;
    }));
    await stop();
  }

  log('cross-repository copy…');
  let attempt = 0;
  scenarios.push(await scenario('mount', 'cross-repo copy (A/x → A/y, mount)', null, runs, async (tool, i) => {
    const dst = `docker://${a.host}/bench/mount-${tool}-${i}-${attempt++}:1`;
    const t = await run(ctx, tool, 'copy', imageRef, dst);
    await expectDigest(dst, fixture.imageDigest);
    return t;
  }));

  const cold = async (tool: ToolName, src: string, repo: string, digest: string): Promise<ToolRun> => {
    const { reg: b, stop } = await freshRegistry();
    try {
      const dst = `docker://${b.host}/${repo}:1`;
      const t = await run(ctx, tool, 'copy', src, dst);
      await expectDigest(dst, digest);
      return t;
    } finally {
      await stop();
    }
  };
  log('cold copy…');
  const coldResult = await scenario('cold', `cold copy (${fixture.layerCount} layers, ${fmt(fixture.imageBytes / 1024 / 1024, 0)} MiB)`, 0.7, runs,
    (tool) => cold(tool, imageRef, 'bench/img', fixture.imageDigest));
  scenarios.push(coldResult);

  log('index cold copy…');
  scenarios.push(await scenario('index-cold', 'cold copy, two-platform index', null, runs,
    (tool) => cold(tool, indexRef, 'bench/multi', fixture.indexDigest)));

  const peak = (r: ToolResult) => (r.maxRssKiB.length > 0 ? mib(Math.max(...r.maxRssKiB)) : null);
  const hoistRss = peak(coldResult.hoist);
  const skopeoRss = peak(coldResult.skopeo);
  const rss = {
    scenario: 'cold',
    hoistPeakMiB: hoistRss,
    skopeoPeakMiB: skopeoRss,
    targetMiB: RSS_TARGET_MIB,
    pass: hoistRss !== null && hoistRss <= RSS_TARGET_MIB,
  };

  const out = [
    `hoist vs ${skopeoVersion}, ${runs} runs each, node ${process.version}, all on 127.0.0.1`,
    '',
    table(scenarios),
    '',
    `hoist peak RSS (cold copy, GNU time %M): ${hoistRss === null ? 'n/a' : `${fmt(hoistRss, 0)} MiB`} `
      + `(target ≤ ${RSS_TARGET_MIB} MiB: ${rss.pass ? 'PASS' : 'MISS'}); skopeo: ${skopeoRss === null ? 'n/a' : `${fmt(skopeoRss, 0)} MiB`}`,
  ];
  const failures = scenarios.flatMap((s) => TOOLS.flatMap((t) => s[t].errors.map((e) => `- ${s.key} ${t}: ${e}`)));
  if (failures.length > 0) out.push('', 'Errors:', ...failures);
  process.stdout.write(`${out.join('\n')}\n`);

  await mkdir(path.dirname(values.out), { recursive: true });
  await writeFile(values.out, `${JSON.stringify({
    date: new Date().toISOString(),
    runs,
    node: process.version,
    skopeo: skopeoVersion,
    fixture: { layers: fixture.layerCount, imageBytes: fixture.imageBytes, imageDigest: fixture.imageDigest, indexDigest: fixture.indexDigest },
    scenarios,
    rss,
  }, null, 2)}\n`);
  log(`wrote ${values.out}`);
}

await runBench('bench:copy', main);
