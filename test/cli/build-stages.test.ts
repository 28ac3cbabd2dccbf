/**
 * `hoist build` as the unprivileged CI user (rootless): multi-stage graphs (skipped and parallel stages, COPY --from,
 * FROM a stage, ONBUILD), RUN mounts (secret, cache, bind, tmpfs) and --network, .dockerignore and stdin
 * Dockerfiles, error messages with positions (and no image tagged on failure), outputs (local, oci and docker
 * archives, --format docker, --push, --iidfile, --label, --annotation, --compress zstd) and --squash.
 * One store for the whole file, busybox (testdata/make-busybox.ts) copied into it once.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { ciUser, hoistAs, hostIds, mkdirFor, rootlessSkipReason, userTempDir, type RunAsOptions, type UserTempDir } from '../helpers/rootless.ts';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { run, show, type RunResult } from '../helpers/run.ts';

const skip = rootlessSkipReason();
const user = ciUser();

let tmp: UserTempDir;
let root: string;

const hoist = (args: string[], opts: RunAsOptions = {}): Promise<RunResult> => hoistAs(user!, root, args, opts);
async function ok(args: string[], opts: RunAsOptions = {}): Promise<RunResult> {
  const r = await hoist(args, opts);
  assert.equal(r.code, 0, show(r));
  return r;
}
/** hoist failed and said so in exactly one `hoist: …` line matching `re`. */
function oneLine(r: RunResult, re: RegExp): void {
  assert.notEqual(r.code, 0, show(r));
  assert.match(r.stderr, /^hoist: [^\n]+\n$/, `expected one hoist: line on stderr\n${show(r)}`);
  assert.match(r.stderr, re, show(r));
}
/** The last stderr line of a failed build (progress lines come before it). */
function lastLine(r: RunResult): string {
  const lines = r.stderr.trimEnd().split('\n');
  return lines[lines.length - 1]!;
}

let ctxCount = 0;
/** A build context: files (path → content) under a fresh directory the user can read. */
async function context(files: Record<string, string>): Promise<string> {
  const dir = path.join(tmp.dir, 'ctx', `c${++ctxCount}`);
  await mkdir(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), content);
  }
  return dir;
}
let outCount = 0;
/** A fresh path under the user's temp dir (the user can create it). */
function outPath(name: string): string {
  return path.join(tmp.dir, 'out', `${++outCount}-${name}`);
}

async function build(args: string[], ctx: string, opts: RunAsOptions = {}): Promise<RunResult> {
  return hoist(['build', '--progress', 'plain', ...args, ctx], opts);
}
/** Builds `dockerfile` (with `files` in the context) and exports the filesystem: gives the build and the export dir. */
async function buildFs(dockerfile: string, files: Record<string, string>, args: string[] = [], opts: RunAsOptions = {}): Promise<{ r: RunResult; fs: string; ctx: string }> {
  const ctx = await context({ Dockerfile: dockerfile, ...files });
  const fs = outPath('fs');
  const r = await build([...args, '-o', `type=local,dest=${fs}`], ctx, opts);
  assert.equal(r.code, 0, show(r));
  return { r, fs, ctx };
}
const text = (fs: string, rel: string): Promise<string> => readFile(path.join(fs, rel), 'utf8');
const exists = (fs: string, rel: string): Promise<boolean> => lstat(path.join(fs, rel)).then(() => true, () => false);

/** The config as stored (`inspect --config` alone shows skopeo's OCI view, which has no OnBuild). */
async function configOf(name: string): Promise<Record<string, any>> {
  return JSON.parse((await ok(['inspect', '--config', '--raw', name])).stdout) as Record<string, any>;
}
async function manifestOf(name: string): Promise<Record<string, any>> {
  return JSON.parse((await ok(['inspect', '--raw', name])).stdout) as Record<string, any>;
}
async function blob(digest: string): Promise<Buffer> {
  return readFile(path.join(root, 'blobs', ...digest.split(':')));
}
function decompress(b: Buffer): Buffer | undefined {
  try {
    if (b[0] === 0x1f && b[1] === 0x8b) return gunzipSync(b);
    if (b.readUInt32LE(0) === 0xfd2fb528) return zstdDecompressSync(b);
  } catch {
    return undefined;
  }
  return undefined;
}
/** Entry names (and types) of a layer blob, in tar order. */
async function layerEntries(digest: string): Promise<Array<{ name: string; type: string; body: string }>> {
  const tar = decompress(await blob(digest))!;
  const ex = tarExtract();
  const out: Array<{ name: string; type: string; body: string }> = [];
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        out.push({ name: h.name, type: h.type ?? 'file', body: Buffer.concat(chunks).toString('utf8') });
        next();
      });
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(tar);
  await done;
  return out;
}
/** Every regular file under `dir` (symlinks and special files skipped). */
async function walkFiles(dir: string, out: string[] = []): Promise<string[]> {
  for (const d of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) await walkFiles(p, out);
    else if (d.isFile()) out.push(p);
  }
  return out;
}
/** The files of the store holding `needle`, in their bytes or (compressed blobs) their uncompressed bytes. */
async function storeFilesHolding(needle: string): Promise<string[]> {
  const n = Buffer.from(needle);
  const hits: string[] = [];
  for (const f of await walkFiles(root)) {
    // Other tests build concurrently: their temp files and leases may be gone by now.
    const b = await readFile(f).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (b === undefined) continue;
    if (b.includes(n) || decompress(b)?.includes(n)) hits.push(path.relative(root, f));
  }
  return hits;
}

before(async () => {
  if (skip) return;
  tmp = await userTempDir(user!, 'hoist-build-stages-');
  root = path.join(tmp.dir, 'store');
  await mkdirFor(user!, path.join(tmp.dir, 'out'));
  const layout = path.join(tmp.dir, 'bb');
  await makeBusyboxImage(layout);
  await ok(['copy', '-q', `oci:${layout}:latest`, 'busybox']);
});

after(async () => {
  if (tmp) await tmp.cleanup();
});

describe('multi-stage builds', { skip, concurrency: true }, () => {
  test('stages the target does not need are skipped; --target builds a middle stage and what it needs', async () => {
    const df = [
      'FROM busybox AS broken',
      'RUN echo broken-ran && exit 1',
      'FROM busybox AS base',
      'RUN echo base > /base.txt',
      'FROM base AS middle',
      'RUN echo middle > /middle.txt',
      'FROM busybox AS final',
      'COPY --from=middle /middle.txt /m.txt',
      '',
    ].join('\n');
    const { r, fs, ctx } = await buildFs(df, {}, ['-t', 'skip-final']);
    assert.doesNotMatch(r.stderr, /broken/, 'the unneeded stage ran');
    assert.equal(await text(fs, 'm.txt'), 'middle\n');
    assert.equal(await exists(fs, 'base.txt'), false);

    const mid = outPath('mid');
    const m = await build(['--target', 'middle', '-t', 'skip-middle', '-o', `type=local,dest=${mid}`], ctx);
    assert.equal(m.code, 0, show(m));
    assert.doesNotMatch(m.stderr, /broken|COPY --from/);
    // FROM a previous stage: the middle stage has the base stage's file and its own.
    assert.equal(await text(mid, 'base.txt'), 'base\n');
    assert.equal(await text(mid, 'middle.txt'), 'middle\n');
    // The skipped stage would have failed: it is really skipped, not ignored.
    const broken = await build(['--target', 'broken'], ctx);
    assert.notEqual(broken.code, 0, show(broken));
    assert.match(lastLine(broken), /exit 1: the command exited with status 1/);
  });

  test('independent stages run in parallel (each waits for the other\'s marker in a shared cache mount)', async () => {
    const id = `par-${randomBytes(6).toString('hex')}`;
    // Run one after the other, the first stage would wait its 20 s for a marker that never comes and fail.
    const wait = (me: string, other: string): string => `RUN --mount=type=cache,id=${id},target=/sync touch /sync/${me} && i=0 && `
      + `while [ ! -e /sync/${other} ]; do i=$((i+1)); if [ $i -gt 200 ]; then echo "no ${other} marker"; exit 7; fi; sleep 0.1; done && echo ${me}-saw-${other} > /${me}.txt`;
    const df = [
      'FROM busybox AS a', wait('a', 'b'),
      'FROM busybox AS b', wait('b', 'a'),
      'FROM scratch',
      'COPY --from=a /a.txt /',
      'COPY --from=b /b.txt /',
      '',
    ].join('\n');
    const { fs } = await buildFs(df, {});
    assert.equal(await text(fs, 'a.txt'), 'a-saw-b\n');
    assert.equal(await text(fs, 'b.txt'), 'b-saw-a\n');
  });

  test('COPY --from a stage by name and by index, from an image in the store; FROM a previous stage', async () => {
    const df = [
      'FROM busybox AS first',
      'RUN echo one > /one.txt',
      'FROM scratch AS second',
      'COPY --from=first /one.txt /by-name.txt',
      'COPY --from=0 /one.txt /by-index.txt',
      'COPY --from=busybox /etc/passwd /img-passwd',
      'FROM second',
      'COPY --from=first /bin/busybox /bin/busybox',
      '',
    ].join('\n');
    const { fs } = await buildFs(df, {}, ['-t', 'copy-from']);
    assert.equal(await text(fs, 'by-name.txt'), 'one\n');
    assert.equal(await text(fs, 'by-index.txt'), 'one\n');
    assert.match(await text(fs, 'img-passwd'), /^root:x:0:0:/);
    assert.ok((await lstat(path.join(fs, 'bin/busybox'))).size > 100_000);
    // FROM second carried its three layers; the last stage added one.
    assert.equal((await manifestOf('copy-from')).layers.length, 4);
  });

  test('ONBUILD triggers are recorded in the base and run when a later build uses it in FROM (and cleared in the child)', async () => {
    const base = await buildFs([
      'FROM busybox',
      'ONBUILD RUN echo triggered > /onbuild.txt',
      'ONBUILD COPY trig.txt /trig.txt',
      '',
    ].join('\n'), {}, ['-t', 'onbase']);
    assert.equal(await exists(base.fs, 'onbuild.txt'), false, 'a trigger ran in the base itself');
    assert.deepEqual((await configOf('onbase')).config.OnBuild, ['RUN echo triggered > /onbuild.txt', 'COPY trig.txt /trig.txt']);

    const child = await buildFs('FROM onbase\nRUN test -f /onbuild.txt && echo child > /child.txt\n', { 'trig.txt': 'from the child context\n' }, ['-t', 'onchild']);
    assert.equal(await text(child.fs, 'onbuild.txt'), 'triggered\n');
    assert.equal(await text(child.fs, 'trig.txt'), 'from the child context\n');
    assert.equal(await text(child.fs, 'child.txt'), 'child\n');
    assert.equal((await configOf('onchild')).config.OnBuild, undefined);
    // A grandchild does not run them again.
    const grand = await buildFs('FROM onchild\nRUN echo grand > /grand.txt\n', {}, ['-t', 'ongrand']);
    assert.doesNotMatch(grand.r.stderr, /triggered|trig\.txt/);
  });
});

describe('RUN mounts and network', { skip, concurrency: true }, () => {
  test('secrets (src=FILE and env=VAR) reach RUN but never a layer, the config, the history or the cache; required and missing fails', async () => {
    const secret = `file-secret-${randomBytes(12).toString('hex')}`;
    const envSecret = `env-secret-${randomBytes(12).toString('hex')}`;
    const marker = `layer-marker-${randomBytes(8).toString('hex')}`;
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
    const secretFile = path.join(tmp.dir, 'secret.txt');
    await writeFile(secretFile, secret, { mode: 0o600 });
    const { uid, gid } = hostIds(user!);
    await chown(secretFile, uid, gid);
    const df = [
      'FROM busybox',
      // Checked inside by hash, so that the Dockerfile (and so the history) never holds the value.
      `RUN --mount=type=secret,id=s busybox sha256sum /run/secrets/s | grep -q ${sha(secret)} && echo file-ok > /file-ok`,
      `RUN --mount=type=secret,id=s,target=/etc/app/key busybox sha256sum /etc/app/key | grep -q ${sha(secret)} && echo target-ok > /target-ok`,
      `RUN --mount=type=secret,id=tok,env=TOKEN printf %s "$TOKEN" | busybox sha256sum | grep -q ${sha(envSecret)} && echo env-ok > /env-ok`,
      `RUN echo ${marker} > /marker`,
      '',
    ].join('\n');
    const { fs } = await buildFs(df, {}, ['-t', 'secrets', '--secret', `id=s,src=${secretFile}`, '--secret', 'id=tok,env=MY_TOKEN'],
      { env: { MY_TOKEN: envSecret } });
    for (const f of ['file-ok', 'target-ok', 'env-ok']) assert.equal(await exists(fs, f), true, `${f} missing: the secret did not reach RUN`);
    // The mount points are not left in the image either.
    assert.equal(await exists(fs, 'run/secrets/s'), false);
    assert.equal(await exists(fs, 'etc/app/key'), false);
    // The scan sees into compressed layers (the marker is found), and finds neither secret anywhere in the store.
    assert.ok((await storeFilesHolding(marker)).some((f) => f.startsWith('blobs/')), 'the scan does not see layer contents');
    assert.deepEqual(await storeFilesHolding(secret), []);
    assert.deepEqual(await storeFilesHolding(envSecret), []);
    const history = JSON.stringify((await configOf('secrets')).history);
    assert.doesNotMatch(history, /secret-[0-9a-f]{24}/);

    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=missing,required cat /run/secrets/missing\n' });
    const r = await build([], ctx);
    assert.notEqual(r.code, 0, show(r));
    assert.match(lastLine(r), /^hoist: .*Dockerfile:2:1: secret "missing" is required; pass it with --secret id=missing,src=FILE$/);
  });

  test('a cache mount keeps its contents between builds and stays out of the image', async () => {
    const id = `keep-${randomBytes(6).toString('hex')}`;
    const first = await buildFs(`FROM busybox\nRUN --mount=type=cache,id=${id},target=/cache echo persisted > /cache/stamp && echo wrote > /wrote\n`, {});
    assert.equal(await exists(first.fs, 'cache/stamp'), false);
    const second = await buildFs(`FROM busybox\nRUN --mount=type=cache,id=${id},target=/cache cat /cache/stamp > /seen\n`, {}, ['--no-cache']);
    assert.equal(await text(second.fs, 'seen'), 'persisted\n');
    assert.equal(await exists(second.fs, 'cache/stamp'), false);
  });

  test('bind mounts: the context read-only (rw writes never reach it), another stage\'s files with from=', async () => {
    const df = [
      'FROM busybox AS src',
      'RUN mkdir /data && echo from-stage > /data/s.txt',
      'FROM busybox',
      'RUN --mount=type=bind,target=/ctx cat /ctx/in.txt > /got-ctx.txt && if touch /ctx/new 2>/dev/null; then exit 9; fi',
      'RUN --mount=type=bind,target=/ctx,rw touch /ctx/rw-made && echo more >> /ctx/in.txt && cat /ctx/in.txt > /got-rw.txt',
      'RUN --mount=type=bind,from=src,source=/data,target=/d cat /d/s.txt > /got-stage.txt',
      '',
    ].join('\n');
    const { fs, ctx } = await buildFs(df, { 'in.txt': 'context\n' });
    assert.equal(await text(fs, 'got-ctx.txt'), 'context\n');
    assert.equal(await text(fs, 'got-rw.txt'), 'context\nmore\n');
    assert.equal(await text(fs, 'got-stage.txt'), 'from-stage\n');
    assert.equal(await readFile(path.join(ctx, 'in.txt'), 'utf8'), 'context\n');
    assert.equal(existsSync(path.join(ctx, 'rw-made')), false);
    assert.equal(existsSync(path.join(ctx, 'new')), false);
    for (const f of ['ctx/in.txt', 'ctx/rw-made', 'd/s.txt', 'data']) assert.equal(await exists(fs, f), false, `/${f} leaked into the image`);
  });

  test('a tmpfs mount is a tmpfs and leaves nothing in the image', async () => {
    const { fs } = await buildFs('FROM busybox\nRUN --mount=type=tmpfs,target=/scratch grep " /scratch tmpfs " /proc/mounts > /mounts && echo x > /scratch/f\n', {});
    assert.match(await text(fs, 'mounts'), /^tmpfs \/scratch tmpfs /);
    assert.equal(await exists(fs, 'scratch/f'), false);
  });

  test('--network=none (the RUN flag and the build flag) leaves only the loopback interface', async () => {
    const ifaces = (s: string): string[] => s.split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((x) => x !== '').sort();
    const host = ifaces(await readFile('/proc/net/dev', 'utf8'));
    const { fs } = await buildFs('FROM busybox\nRUN --network=none cat /proc/net/dev > /none.txt\nRUN cat /proc/net/dev > /default.txt\n', {});
    assert.deepEqual(ifaces(await text(fs, 'none.txt')), ['lo']);
    assert.deepEqual(ifaces(await text(fs, 'default.txt')), host);
    const flag = await buildFs('FROM busybox\nRUN cat /proc/net/dev > /flag.txt\n', {}, ['--network', 'none']);
    assert.deepEqual(ifaces(await text(flag.fs, 'flag.txt')), ['lo']);
  });
});

describe('contexts: .dockerignore and stdin', { skip, concurrency: true }, () => {
  test('.dockerignore rules apply end to end; <Dockerfile>.dockerignore wins with -f', async () => {
    const files = {
      '.dockerignore': '*.log\n!keep.log\ndir/sub\n**/*.tmp\n/top-only.txt\n',
      'a.txt': 'a', 'b.log': 'b', 'keep.log': 'k', 'top-only.txt': 't', 'x.tmp': 'x',
      'dir/x.txt': 'x', 'dir/top-only.txt': 'nested', 'dir/deep/y.tmp': 'y', 'dir/sub/z.txt': 'z',
      'build/app.Dockerfile': 'FROM scratch\nCOPY . /c/\n',
      'build/app.Dockerfile.dockerignore': 'a.txt\nbuild\n',
    };
    const { fs, ctx } = await buildFs('FROM scratch\nCOPY . /c/\n', files);
    for (const f of ['a.txt', 'keep.log', 'dir/x.txt', 'dir/top-only.txt', 'Dockerfile', '.dockerignore']) assert.equal(await exists(fs, `c/${f}`), true, `${f} missing`);
    for (const f of ['b.log', 'top-only.txt', 'x.tmp', 'dir/deep/y.tmp', 'dir/sub']) assert.equal(await exists(fs, `c/${f}`), false, `${f} not ignored`);

    const viaF = outPath('fs');
    const r = await build(['-f', path.join(ctx, 'build/app.Dockerfile'), '-o', `type=local,dest=${viaF}`], ctx);
    assert.equal(r.code, 0, show(r));
    // Only the Dockerfile's own ignore file counts: a.txt and build/ are out, what .dockerignore names is in.
    assert.equal(await exists(viaF, 'c/a.txt'), false);
    assert.equal(await exists(viaF, 'c/build'), false);
    for (const f of ['b.log', 'top-only.txt', 'dir/sub/z.txt']) assert.equal(await exists(viaF, `c/${f}`), true, `${f} missing`);
  });

  test('-f - reads the Dockerfile from stdin with a context; - builds with no context, and a COPY then fails clearly', async () => {
    const ctx = await context({ 'a.txt': 'from the context\n' });
    const fs = outPath('fs');
    const r = await hoist(['build', '-q', '-f', '-', '-o', `type=local,dest=${fs}`, ctx], { input: 'FROM scratch\nCOPY a.txt /\n' });
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
    assert.equal(await text(fs, 'a.txt'), 'from the context\n');

    const fs2 = outPath('fs');
    const s = await hoist(['build', '-q', '-o', `type=local,dest=${fs2}`, '-'], { input: 'FROM busybox\nRUN echo no-context > /n.txt\n' });
    assert.equal(s.code, 0, show(s));
    assert.equal(await text(fs2, 'n.txt'), 'no-context\n');

    const c = await hoist(['build', '-q', '-'], { input: 'FROM busybox\nCOPY a.txt /\n' });
    oneLine(c, /^hoist: Dockerfile:2:1: there is no build context \(the Dockerfile came from stdin with "-"\); pass a context directory: hoist build -f - DIR\n$/);
  });
});

describe('errors: one line with a position, nothing tagged', { skip, concurrency: true }, () => {
  const bad = async (dockerfile: string, args: string[] = []): Promise<RunResult> => {
    const ctx = await context({ Dockerfile: dockerfile });
    return build(args, '.', { cwd: ctx });
  };
  test('unknown instruction, with a suggestion', async () => {
    oneLine(await bad('FORM busybox\n'), /^hoist: Dockerfile:1:1: .*FORM.*did you mean FROM/i);
  });
  test('a bad flag', async () => {
    oneLine(await bad('FROM busybox\nCOPY --frm=x a /\n'), /^hoist: Dockerfile:2:\d+: .*--frm/);
  });
  test('an unterminated heredoc', async () => {
    oneLine(await bad('FROM busybox\nRUN <<EOF\necho hi\n'), /^hoist: Dockerfile:2:\d+: .*(heredoc|EOF)/i);
  });
  test('a failing ${V:?} expansion', async () => {
    // Quoted: ENV splits its words on blanks before expanding, as BuildKit does. Expansion happens as the stage
    // runs (after FROM's progress line), so -q shows the error alone.
    oneLine(await bad('FROM busybox\nENV X="${V:?need V}"\n', ['-q']), /^hoist: Dockerfile:2:1: .*V: need V\n$/);
  });

  test('a failing RUN names the step, the command and the exit code; no image gets the name, an existing name keeps its image', async () => {
    const good = await context({ Dockerfile: 'FROM busybox\nRUN echo good > /good\n' });
    await ok(['build', '-q', '-t', 'keepname', good]);
    const before = (await manifestOf('keepname')).config.digest as string;
    const ctx = await context({ Dockerfile: 'FROM busybox AS app\nRUN echo step-output && exit 3\n' });
    const r = await build(['-t', 'keepname', '-t', 'newname'], '.', { cwd: ctx });
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /step-output/);
    assert.equal(lastLine(r), 'hoist: Dockerfile:2:1 [app] RUN echo step-output && exit 3: the command exited with status 3');
    assert.equal((await manifestOf('keepname')).config.digest, before);
    const gone = await hoist(['inspect', 'newname']);
    assert.notEqual(gone.code, 0, show(gone));
  });

  test('a COPY of a file missing from the context', async () => {
    const r = await build([], '.', { cwd: await context({ Dockerfile: 'FROM busybox\nCOPY nope.txt /\n' }) });
    assert.notEqual(r.code, 0, show(r));
    assert.match(lastLine(r), /^hoist: .*nope\.txt/);
  });

  test('--target naming no stage', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox AS one\nRUN true\n' });
    oneLine(await build(['--target', 'nope'], ctx), /nope/);
  });
});

describe('outputs', { skip, concurrency: true }, () => {
  let reg: TestRegistry | undefined;
  before(async () => {
    if (!skip) reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  test('-o local, oci and docker-archive, --iidfile, --label and --annotation', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo out > /out.txt\n' });
    const local = outPath('local');
    const ociTar = outPath('img-oci.tar');
    const dockerTar = outPath('img-docker.tar');
    const iid = outPath('iid');
    const r = await build(['-t', 'outputs', '--label', 'org.example.team=build', '--annotation', 'org.example.note=annotated', '--iidfile', iid,
      '-o', `type=local,dest=${local}`, '-o', `type=oci,dest=${ociTar}`, '-o', `type=docker-archive,dest=${dockerTar}`], ctx);
    assert.equal(r.code, 0, show(r));
    const id = r.stdout.trim();
    assert.equal(await readFile(iid, 'utf8'), id);
    assert.equal(await text(local, 'out.txt'), 'out\n');
    assert.equal(await exists(local, 'bin/busybox'), true);
    const manifest = await manifestOf('outputs');
    assert.deepEqual(manifest.annotations, { 'org.example.note': 'annotated' });
    assert.equal((await configOf('outputs')).config.Labels['org.example.team'], 'build');

    for (const ref of [`oci-archive:${ociTar}`, `docker-archive:${dockerTar}`]) {
      const s = await run('skopeo', ['inspect', ref]);
      assert.equal(s.code, 0, `${ref}: ${show(s)}`);
      const info = JSON.parse(s.stdout) as { Labels: Record<string, string>; Layers: string[] };
      assert.equal(info.Labels['org.example.team'], 'build');
      assert.equal(info.Layers.length, 2);
    }
  });

  test('--format docker writes a Docker v2s2 manifest that skopeo reads (pushed: skopeo 1.9 reads only OCI manifests from a layout)', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo d > /d.txt\nCMD ["cat", "/d.txt"]\n' });
    const name = `${reg!.host}/dockerfmt:1`;
    const r = await build(['-t', name, '--format', 'docker', '--push', '--tls-verify=false'], ctx);
    assert.equal(r.code, 0, show(r));
    const m = await manifestOf(name);
    assert.equal(m.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(m.config.mediaType, 'application/vnd.docker.container.image.v1+json');
    for (const l of m.layers) assert.equal(l.mediaType, 'application/vnd.docker.image.rootfs.diff.tar.gzip');
    const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${name}`]);
    assert.equal(raw.code, 0, show(raw));
    assert.equal((JSON.parse(raw.stdout) as { mediaType: string }).mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    const s = await run('skopeo', ['inspect', '--config', '--tls-verify=false', `docker://${name}`]);
    assert.equal(s.code, 0, show(s));
    assert.deepEqual((JSON.parse(s.stdout) as { config: { Cmd: string[] } }).config.Cmd, ['cat', '/d.txt']);
    assert.equal((await ok(['run', '--rm', name])).stdout, 'd\n');
  });

  test('--push sends every -t name to its registry', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo pushed > /p.txt\n' });
    const name = `${reg!.host}/app:1`;
    const r = await build(['-t', name, '-t', `${reg!.host}/app:latest`, '--push', '--tls-verify=false'], ctx);
    assert.equal(r.code, 0, show(r));
    for (const n of [name, `${reg!.host}/app:latest`]) {
      const s = await run('skopeo', ['inspect', '--tls-verify=false', `docker://${n}`]);
      assert.equal(s.code, 0, `${show(s)}\nregistry log: ${reg!.log()}`);
      assert.equal((JSON.parse(s.stdout) as { Digest: string }).Digest, r.stdout.trim());
    }
  });

  test('--compress zstd: new layers are tar+zstd and the image still runs', async () => {
    const ctx = await context({ Dockerfile: 'FROM busybox\nRUN echo zstd-layer > /z.txt\nCOPY f.txt /\n', 'f.txt': 'copied\n' });
    const r = await build(['-t', 'zstdimg', '--compress', 'zstd'], ctx);
    assert.equal(r.code, 0, show(r));
    const types = (await manifestOf('zstdimg')).layers.map((l: { mediaType: string }) => l.mediaType);
    assert.deepEqual(types, ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+zstd', 'application/vnd.oci.image.layer.v1.tar+zstd']);
    assert.equal((await ok(['run', '--rm', 'zstdimg', 'cat', '/z.txt', '/f.txt'])).stdout, 'zstd-layer\ncopied\n');
  });
  test('layers of a stage the image is not built on are stored as plain tars; built as the target, that stage compresses', async () => {
    const marker = `plain-stage-${process.pid}-${Date.now()}`;
    const ctx = await context({ Dockerfile: `FROM busybox AS tools\nRUN echo ${marker} > /made.txt\nFROM busybox\nCOPY --from=tools /made.txt /\n` });
    const r = await build(['-t', 'plainstage'], ctx);
    assert.equal(r.code, 0, show(r));
    const layers = (await manifestOf('plainstage')).layers as { mediaType: string; digest: string }[];
    assert.deepEqual(layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip']);
    // The RUN layer of `tools`: in the build cache, an uncompressed tar whose digest is its diffID.
    const steps = path.join(root, 'build-cache', 'steps');
    const found: { mediaType: string; digest: string; diffID: string }[] = [];
    for (const f of await readdir(steps)) {
      const layer = (JSON.parse(await readFile(path.join(steps, f), 'utf8')) as { layer?: { mediaType: string; digest: string; diffID: string } }).layer;
      if (layer && (await blob(layer.digest)).includes(marker)) found.push(layer);
    }
    assert.equal(found.length, 1, JSON.stringify(found));
    assert.equal(found[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar');
    assert.equal(found[0]!.digest, found[0]!.diffID);
    const asTarget = await build(['-t', 'plainstage-tools', '--target', 'tools'], ctx);
    assert.equal(asTarget.code, 0, show(asTarget));
    const top = ((await manifestOf('plainstage-tools')).layers as { mediaType: string; digest: string }[]).at(-1)!;
    assert.equal(top.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.ok(decompress(await blob(top.digest))?.includes(marker));
  });
});

test('--squash: the new layers become one on top of the untouched base layers; deletions hold', { skip }, async () => {
  const df = [
    'FROM busybox',
    'RUN mkdir -p /sq/keep && echo one > /sq/one && ln /sq/one /sq/one-link && echo gone > /sq/gone && echo k > /sq/keep/k && rm /etc/group',
    'COPY a.txt /sq/a.txt',
    'RUN rm /sq/gone && rm -r /sq/keep && mkdir /sq/keep && echo new > /sq/keep/new && echo two > /sq/two',
    'RUN rm -r /root && mkdir /root && echo r > /root/r',
    'ENV SQUASHED=1',
    'CMD ["cat", "/sq/two"]',
    '',
  ].join('\n');
  const { fs, ctx } = await buildFs(df, { 'a.txt': 'copied\n' }, ['-t', 'squashed', '--squash']);
  const base = await manifestOf('busybox');
  const m = await manifestOf('squashed');
  assert.equal(m.layers.length, base.layers.length + 1);
  assert.deepEqual(m.layers[0], base.layers[0]);
  const config = await configOf('squashed');
  assert.equal(config.rootfs.diff_ids.length, 2);
  // History: the base's entry, the build's steps as empty entries, one entry for the squashed layer.
  assert.equal(config.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer).length, 2);
  assert.equal(config.history.length, 1 + 6 + 1);
  assert.match(config.history.at(-1).created_by, /squash/);
  assert.deepEqual(config.config.Env.filter((e: string) => e.startsWith('SQUASHED')), ['SQUASHED=1']);

  for (const [f, want] of [['sq/one', 'one\n'], ['sq/one-link', 'one\n'], ['sq/a.txt', 'copied\n'], ['sq/two', 'two\n'], ['sq/keep/new', 'new\n'], ['root/r', 'r\n'], ['etc/passwd', undefined]] as const) {
    assert.equal(await exists(fs, f), true, `${f} missing`);
    if (want !== undefined) assert.equal(await text(fs, f), want);
  }
  for (const f of ['sq/gone', 'sq/keep/k', 'etc/group']) assert.equal(await exists(fs, f), false, `${f} is back`);

  // The layer: each path once, a whiteout only for what the base has (etc/group), an opaque marker only where the
  // base had the directory (root), nothing of what was made and deleted within the new layers.
  const entries = await layerEntries(m.layers[1].digest);
  const names = entries.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, `a path twice: ${names.join(' ')}`);
  assert.ok(names.includes('etc/.wh.group'), names.join(' '));
  assert.ok(names.includes('root/.wh..wh..opq'), names.join(' '));
  assert.ok(!names.some((n) => /gone|sq\/keep\/k$|sq\/keep\/\.wh|sq\/\.wh/.test(n)), names.join(' '));
  assert.equal(entries.find((e) => e.name === 'sq/two')?.body, 'two\n');
  // A hard link is written as a copy of its target (the layer holds no hard links).
  assert.deepEqual(entries.filter((e) => e.name.startsWith('sq/one')).map((e) => [e.name, e.type, e.body]), [['sq/one', 'file', 'one\n'], ['sq/one-link', 'file', 'one\n']]);
  // Sorted as hoist writes layers: parents first, names in byte order.
  const sorted = [...names].sort((a, b) => Buffer.compare(Buffer.from(a.replace(/\/$/, '').split('/').join('\0')), Buffer.from(b.replace(/\/$/, '').split('/').join('\0'))));
  assert.deepEqual(names, sorted);

  assert.equal((await ok(['run', '--rm', 'squashed'])).stdout, 'two\n');
  assert.equal((await ok(['run', '--rm', 'squashed', 'sh', '-c', 'test ! -e /etc/group && test ! -e /sq/gone && cat /root/r /sq/keep/new'])).stdout, 'r\nnew\n');

  // The same build again gives the same image (the squashed layer is deterministic).
  const again = await build(['-q', '-t', 'squashed2', '--squash'], ctx);
  assert.equal(again.code, 0, show(again));
  assert.equal((await manifestOf('squashed2')).layers[1].digest, m.layers[1].digest);
});
