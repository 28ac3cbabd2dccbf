/**
 * `hoist build` end to end, as the unprivileged CI user (rootless): every instruction's effect on the image config
 * (read back with skopeo) and on the layers (read from the store's blobs), ARG/ENV scoping, COPY/ADD rules, the step
 * cache (hits and misses per step, parsed from `--progress plain`), reproducible digests, and images that run under
 * `hoist run` and `podman run`. One store for the file; each Dockerfile is built once and shared by the tests that
 * look at it; independent tests run concurrently, the cache and reproducibility sequences in order.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { gzipSync, createGunzip } from 'node:zlib';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import { makeLayerTar } from '../helpers/make-image.ts';
import { busyboxDerived } from '../helpers/run-images.ts';
import { ciUser, hoistAs, hostIds, mkdirFor, REPO_ROOT, rootlessSkipReason, runAs, userTempDir, type UserTempDir } from '../helpers/rootless.ts';
import { show, type RunResult } from '../helpers/run.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { hostPlatform } from '../../src/oci/platform.ts';
import { readAll } from '../../src/util/stream.ts';

const skip = rootlessSkipReason();
const user = ciUser();

let tmp: UserTempDir;
let root: string;
let layout: string;
let server: http.Server;
let port = 0;
const DOWNLOAD = 'downloaded over http\n';
const DOWNLOAD_SUM = `sha256:${createHash('sha256').update(DOWNLOAD).digest('hex')}`;

interface HoistOpts {
  input?: string;
  env?: Record<string, string | undefined>;
  store?: string;
}
const hoist = (args: string[], o: HoistOpts = {}): Promise<RunResult> =>
  hoistAs(user!, o.store ?? root, args, { ...(o.input !== undefined ? { input: o.input } : {}), ...(o.env ? { env: o.env } : {}) });
async function ok(args: string[], o: HoistOpts = {}): Promise<RunResult> {
  const r = await hoist(args, o);
  assert.equal(r.code, 0, show(r));
  return r;
}

/** `hoist build --progress plain -t NAME [extra] (- | -f - CONTEXT)` with the Dockerfile on stdin. */
function build(name: string, dockerfile: string, o: HoistOpts & { context?: string; extra?: string[] } = {}): Promise<RunResult> {
  const where = o.context === undefined ? ['-'] : ['-f', '-', o.context];
  return ok(['build', '--progress', 'plain', '-t', name, ...(o.extra ?? []), ...where], { ...o, input: dockerfile });
}

/** Memoized builds: the first test that needs one starts it, the others wait for the same result. */
const builds = new Map<string, Promise<RunResult>>();
function once(key: string, make: () => Promise<RunResult>): Promise<RunResult> {
  let p = builds.get(key);
  if (p === undefined) {
    p = make();
    builds.set(key, p);
  }
  return p;
}

const fullName = (name: string): string => (name.includes('/') ? name : `docker.io/library/${name}`) + (name.includes(':') ? '' : ':latest');

interface Config {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  config?: Record<string, unknown> & {
    Env?: string[]; Cmd?: string[] | null; Entrypoint?: string[] | null; WorkingDir?: string; User?: string;
    Labels?: Record<string, string>; ExposedPorts?: Record<string, object>; Volumes?: Record<string, object>;
    Healthcheck?: Record<string, unknown>; StopSignal?: string; Shell?: string[]; OnBuild?: string[];
  };
  rootfs: { diff_ids: string[] };
  history: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
}

/**
 * The image config as skopeo reads it from the store (an OCI layout named by normalized names). `--raw`: skopeo
 * 1.9 parses the config into image-spec's struct otherwise, which has no Healthcheck (nor OnBuild, Shell, …).
 */
async function skopeoConfig(name: string, store = root): Promise<Config> {
  const r = await runAs(user!, 'skopeo', ['inspect', '--config', '--raw', `oci:${store}:${fullName(name)}`]);
  assert.equal(r.code, 0, show(r));
  return JSON.parse(r.stdout) as Config;
}

interface Entry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname?: string;
  content: string;
}

const blobPath = (store: string, digest: string): string => path.join(store, 'blobs', ...digest.split(':'));

async function readLayer(file: string): Promise<Entry[]> {
  const ex = tarExtract();
  const out: Entry[] = [];
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.push({
        name: h.name.replace(/^\.?\//, '').replace(/\/$/, ''), type: h.type ?? 'file', mode: (h.mode ?? 0) & 0o7777, uid: h.uid ?? 0,
        gid: h.gid ?? 0, mtime: (h.mtime?.getTime() ?? 0) / 1000, ...(h.linkname ? { linkname: h.linkname } : {}),
        content: Buffer.concat(chunks).toString('utf8'),
      });
      next();
    });
  });
  await pipeline(createReadStream(file), createGunzip(), ex);
  return out;
}

interface StoredImage {
  digest: string;
  configText: string;
  config: Config;
  /** Every layer's entries, bottom first. */
  layers: Entry[][];
}

/** An image read straight from the store's files: the manifest the name points at, its config bytes and layers. */
async function stored(name: string, store = root): Promise<StoredImage> {
  const index = JSON.parse(await readFile(path.join(store, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === fullName(name));
  assert.ok(d, `${fullName(name)} is not in ${store}/index.json`);
  const manifest = JSON.parse(await readFile(blobPath(store, d.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  const configText = await readFile(blobPath(store, manifest.config.digest), 'utf8');
  const layers: Entry[][] = [];
  for (const l of manifest.layers) layers.push(await readLayer(blobPath(store, l.digest)));
  return { digest: d.digest, configText, config: JSON.parse(configText) as Config, layers };
}

/** The layers above the base (busybox's one layer) merged: path → its last entry. */
function addedFiles(img: StoredImage, baseLayers = 1): Map<string, Entry> {
  const m = new Map<string, Entry>();
  for (const l of img.layers.slice(baseLayers)) for (const e of l) m.set(e.name, e);
  return m;
}

function file(fs: Map<string, Entry>, p: string): Entry {
  const e = fs.get(p);
  assert.ok(e, `${p} is not in the image's new layers (has: ${[...fs.keys()].sort().join(' ')})`);
  return e;
}

interface Step {
  id: number;
  header: string;
  cached: boolean;
  done: boolean;
  output: string[];
}

/** `--progress plain` lines: `#N [stage n/m] TEXT`, `#N 0.123 output`, `#N CACHED`, `#N DONE 0.1s`. */
function parseSteps(stderr: string): Map<number, Step> {
  const steps = new Map<number, Step>();
  for (const line of stderr.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const id = Number(m[1]);
    const rest = m[2]!;
    let s = steps.get(id);
    if (s === undefined) {
      s = { id, header: rest, cached: false, done: false, output: [] };
      steps.set(id, s);
      continue;
    }
    if (rest === 'CACHED') s.cached = true;
    else if (/^DONE \d+\.\d+s$/.test(rest)) s.done = true;
    else {
      const o = /^\d+\.\d{3} (.*)$/.exec(rest);
      if (o) s.output.push(o[1]!);
    }
  }
  return steps;
}

/** The step numbers (FROM excluded) that came from the cache, and those that ran. */
function cachedAndRun(stderr: string): { cached: number[]; ran: number[] } {
  const cached: number[] = [];
  const ran: number[] = [];
  for (const s of parseSteps(stderr).values()) {
    if (/\] FROM /.test(s.header)) continue;
    if (s.cached) cached.push(s.id);
    else {
      assert.ok(s.done, `step #${s.id} neither CACHED nor DONE:\n${stderr}`);
      ran.push(s.id);
    }
  }
  return { cached, ran };
}

const imageId = (r: RunResult): string => {
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  return r.stdout.trim();
};

async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(dir, rel);
    await mkdir(path.dirname(p), { recursive: true });
    await writeFile(p, content);
    await chmod(p, 0o644);
  }
}

const ARCH = hostPlatform().architecture;

before(async () => {
  if (skip) return;
  tmp = await userTempDir(user!, 'hoist-build-cli-');
  root = path.join(tmp.dir, 'store');
  layout = path.join(tmp.dir, 'images');
  await makeBusyboxImage(layout, 'busybox');
  // A second, different base for the "changed base" cache case.
  await busyboxDerived(layout, 'busybox2', [await makeLayerTar({ 'etc/base2': 'another base\n' })]);
  await ok(['copy', '-q', `oci:${layout}:busybox`, 'busybox']);
  await ok(['copy', '-q', `oci:${layout}:busybox`, 'cachebase']);
  server = http.createServer((req, res) => {
    if (req.url === '/dl/file.txt') {
      res.writeHead(200, { 'content-type': 'text/plain', 'last-modified': new Date(1_600_000_000_000).toUTCString() });
      res.end(DOWNLOAD);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server?.close();
  if (tmp) await tmp.cleanup();
});

// ---------------------------------------------------------------------------------------------------------------
// Dockerfiles

const META = `ARG BASE=busybox
FROM \${BASE}
MAINTAINER Jane Doe <jane@example.com>
ENV A=1 B="two words"
ENV C=\${A}-x
ARG A=from-arg
ENV D=$A
LABEL com.example.one="1" com.example.two="\${B}"
LABEL multi.word="a b c"
EXPOSE 80 443/tcp 53/udp 8000-8001
VOLUME /data /cache
VOLUME ["/logs"]
WORKDIR /srv
WORKDIR rel
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --start-interval=2s --retries=4 CMD wget -q localhost || exit 1
STOPSIGNAL SIGTERM
ONBUILD RUN echo triggered > /tmp/onbuild.txt
SHELL ["/bin/sh", "-ec"]
CMD echo hi
ENTRYPOINT ["/bin/echo"]
USER 1000:1000
`;
const metaBuild = (): Promise<RunResult> => once('meta', () => build('meta', META));

const RUNS = `FROM busybox
WORKDIR /made/by/workdir
WORKDIR sub
RUN pwd
RUN ["/bin/sh", "-c", "echo exec-form:$0:$1", "zero", "one"]
SHELL ["/bin/sh", "-xc"]
RUN echo shell-form
RUN <<EOF
echo heredoc-1 > /tmp/heredoc.txt
echo heredoc-2 >> /tmp/heredoc.txt
EOF
RUN cat <<EOT > /tmp/heredoc2.txt
line one $((1+1))
EOT
USER 1000:1000
WORKDIR /userwd
RUN id -u && id -g && touch /userwd/mine
CMD echo "$(id -u) in $(pwd)"
`;
const runsBuild = (): Promise<RunResult> => once('runs', () => build('runs', RUNS));

const ARGS = `ARG BASE=no-such-image
ARG GLOBAL=g-default
ARG GLOBAL2=g2-default
ARG NOTREDECLARED=nr
FROM busybox AS other
ENV SECOND=x\${GLOBAL}x\${LOCAL}x
FROM \${BASE}
ARG GLOBAL
ARG GLOBAL2
ARG LOCAL=l-default
ARG TARGETARCH
ARG TARGETOS
ARG TARGETPLATFORM
ARG BUILDARCH
ENV FROM_GLOBAL=\${GLOBAL} G2=\${GLOBAL2} LOCAL=\${LOCAL} NR=x\${NOTREDECLARED}x ARCH=\${TARGETARCH} OS=\${TARGETOS} PLAT=\${TARGETPLATFORM} BARCH=\${BUILDARCH}
ARG SHADOW=arg-value
ENV SHADOW=env-value
RUN echo "run: GLOBAL=$GLOBAL LOCAL=$LOCAL SHADOW=$SHADOW NR=x\${NOTREDECLARED}x ARCH=$TARGETARCH"
`;
const argsBuild = (): Promise<RunResult> => once('args', () =>
  build('args', ARGS, { extra: ['--build-arg', 'BASE=other', '--build-arg', 'GLOBAL=from-cli', '--build-arg', 'UNUSED_ONE=1'] }));

/** The COPY/ADD context, made once. */
let copyCtx: Promise<string> | undefined;
function copyContext(): Promise<string> {
  copyCtx ??= (async () => {
    const dir = path.join(tmp.dir, 'copy-ctx');
    await writeTree(dir, {
      'etc-passwd': 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n',
      'etc-group': 'root:x:0:\napp:x:2345:\ngrp:x:3456:app\n',
      'src/a.txt': 'a\n', 'src/b.txt': 'bb\n', 'src/c.md': 'c\n', 'src/skip.txt': 'skip\n', 'src/sub/d.txt': 'd\n',
      'p/x/one.txt': 'one\n', 'p/y/two.txt': 'two\n',
    });
    // Owned by the user on the host: the layer must still say 0:0 (BuildKit resets context owners).
    const { uid, gid } = hostIds(user!);
    await chown(path.join(dir, 'src/a.txt'), uid, gid);
    const pack = tarPack();
    pack.entry({ name: 'dir/', type: 'directory', mode: 0o750, uid: 42, gid: 43, mtime: new Date(1_500_000_000_000) });
    pack.entry({ name: 'dir/inner.txt', mode: 0o640, uid: 42, gid: 43, mtime: new Date(1_500_000_000_000) }, 'inside the archive\n');
    pack.finalize();
    await writeFile(path.join(dir, 'arch.tar.gz'), gzipSync(await readAll(pack as unknown as import('node:stream').Readable, 1 << 20)));
    return dir;
  })();
  return copyCtx;
}

const COPY = (): string => `FROM busybox
COPY etc-passwd /etc/passwd
COPY etc-group /etc/group
COPY --chown=app:grp src/a.txt /owned/
COPY --chown=app src/a.txt /owned/by-name-only
COPY --chown=1234:77 src/a.txt /owned/numeric
COPY --chmod=0640 src/a.txt /modes/octal
COPY --chmod=u=rwx,g=rx,o= src/b.txt /modes/symbolic
COPY --chmod=+x src/b.txt /modes/plus-x
COPY src/*.txt /glob/
COPY src/[ab].txt src/sub/d.txt /glob2/
COPY --exclude=*.md --exclude=skip.txt src/ /excl/
COPY --parents p/*/*.txt /par/
COPY --parents ./p/./x/one.txt /piv/
COPY src/a.txt /dest-file
COPY src/a.txt /dest-dir/
COPY src/a.txt /etc
COPY src/sub /subcontents/
COPY src /whole
ENV HV=expanded-value
COPY <<EOF /heredoc/expanded.txt
value=\${HV}
EOF
COPY <<"EOF" /heredoc/literal.txt
value=\${HV}
EOF
COPY <<one.txt <<two.txt /heredoc/multi/
first
one.txt
second
two.txt
ADD arch.tar.gz /unpacked/
ADD src/a.txt /added-plain
ADD --checksum=${DOWNLOAD_SUM} http://127.0.0.1:${port}/dl/file.txt /fetched/
ADD http://127.0.0.1:${port}/dl/file.txt /fetched-nosum
`;
const copyBuild = (): Promise<RunResult> => once('copy', async () => build('copy', COPY(), { context: await copyContext() }));
const copyFs = async (): Promise<Map<string, Entry>> => {
  await copyBuild();
  return addedFiles(await stored('copy'));
};

describe('hoist build (rootless)', { skip, concurrency: true }, () => {
  // -------------------------------------------------------------------------------------------------------------
  // Metadata instructions

  test('config instructions: skopeo inspect --config shows Env/Labels/ExposedPorts/Volumes/WorkingDir/Healthcheck/StopSignal/Shell/OnBuild/Cmd/Entrypoint/User/author', async () => {
    await metaBuild();
    const c = await skopeoConfig('meta');
    const cc = c.config!;
    assert.equal(c.author, 'Jane Doe <jane@example.com>');
    assert.equal(c.architecture, ARCH);
    assert.equal(c.os, 'linux');
    // ENV wins over an ARG of the same name (D=$A sees the ENV's 1, not the ARG's from-arg).
    assert.deepEqual(cc.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1', 'B=two words', 'C=1-x', 'D=1']);
    assert.deepEqual(cc.Labels, { 'com.example.one': '1', 'com.example.two': 'two words', 'multi.word': 'a b c' });
    assert.deepEqual(Object.keys(cc.ExposedPorts!).sort(), ['443/tcp', '53/udp', '80/tcp', '8000/tcp', '8001/tcp']);
    assert.deepEqual(Object.keys(cc.Volumes!).sort(), ['/cache', '/data', '/logs']);
    assert.equal(cc.WorkingDir, '/srv/rel');
    assert.deepEqual(cc.Healthcheck, {
      Test: ['CMD-SHELL', 'wget -q localhost || exit 1'], Interval: 30e9, Timeout: 5e9, StartPeriod: 10e9, StartInterval: 2e9, Retries: 4,
    });
    assert.equal(cc.StopSignal, 'SIGTERM');
    assert.deepEqual(cc.Shell, ['/bin/sh', '-ec']);
    assert.deepEqual(cc.OnBuild, ['RUN echo triggered > /tmp/onbuild.txt']);
    // CMD's shell form uses the SHELL; a CMD set in the same stage survives the ENTRYPOINT after it.
    assert.deepEqual(cc.Cmd, ['/bin/sh', '-ec', 'echo hi']);
    assert.deepEqual(cc.Entrypoint, ['/bin/echo']);
    assert.equal(cc.User, '1000:1000');
  });

  test('history: the base\'s entries, then one per instruction (no ARG), empty_layer exactly where no layer was added', async () => {
    await metaBuild();
    const c = await skopeoConfig('meta');
    assert.equal(c.history[0]!.created_by, 'testdata/make-busybox.ts (busybox-static)');
    const ours = c.history.slice(1);
    assert.deepEqual(ours.map((h) => h.created_by!.split(' ')[0]), [
      'MAINTAINER', 'ENV', 'ENV', 'ENV', 'LABEL', 'LABEL', 'EXPOSE', 'VOLUME', 'VOLUME', 'WORKDIR', 'WORKDIR', 'HEALTHCHECK', 'STOPSIGNAL',
      'ONBUILD', 'SHELL', 'CMD', 'ENTRYPOINT', 'USER',
    ]);
    // Only the two WORKDIRs made directories (/srv and /srv/rel are new); everything else is config only.
    assert.deepEqual(ours.filter((h) => !h.empty_layer).map((h) => h.created_by), ['WORKDIR /srv', 'WORKDIR /srv/rel']);
    // BuildKit's texts: ENV, LABEL and USER with their words expanded, the others as written.
    const by = ours.map((h) => h.created_by);
    for (const t of ['ENV A=1 B=two words', 'ENV C=1-x', 'ENV D=1', 'LABEL com.example.one=1 com.example.two=two words', 'USER 1000:1000',
      'MAINTAINER Jane Doe <jane@example.com>', 'STOPSIGNAL SIGTERM']) {
      assert.ok(by.includes(t), `no history entry "${t}" in:\n${by.join('\n')}`);
    }
    for (const h of ours) assert.equal(h.comment, 'buildkit.dockerfile.v0');
    assert.equal(c.rootfs.diff_ids.length, c.history.filter((h) => !h.empty_layer).length);
    const img = await stored('meta');
    const fs = addedFiles(img);
    assert.equal(file(fs, 'srv').type, 'directory');
    assert.equal(file(fs, 'srv/rel').mode, 0o755);
  });

  test('ENTRYPOINT drops an inherited CMD; shell-form ENTRYPOINT/CMD use the SHELL in force', async () => {
    await build('ep1', 'FROM busybox\nENTRYPOINT echo ep\n');
    const c = await skopeoConfig('ep1');
    assert.deepEqual(c.config!.Entrypoint, ['/bin/sh', '-c', 'echo ep']);
    assert.equal(c.config!.Cmd ?? null, null, 'busybox\'s Cmd ["sh"] must be reset');
    // A child of meta: its ENTRYPOINT resets meta's CMD too (inherited, not set in this stage).
    await metaBuild();
    await build('ep2', 'FROM meta\nSHELL ["/bin/sh", "-c"]\nENTRYPOINT exec echo child\n');
    const c2 = await skopeoConfig('ep2');
    assert.deepEqual(c2.config!.Entrypoint, ['/bin/sh', '-c', 'exec echo child']);
    assert.equal(c2.config!.Cmd ?? null, null);
    const r = await ok(['run', '--rm', 'ep1']);
    assert.equal(r.stdout, 'ep\n');
  });

  test('HEALTHCHECK NONE; ONBUILD triggers run in a child build (as its first steps) and are not inherited', async () => {
    await metaBuild();
    const r = await build('child', 'FROM meta\nHEALTHCHECK NONE\n');
    const c = await skopeoConfig('child');
    assert.deepEqual(c.config!.Healthcheck, { Test: ['NONE'] });
    assert.equal(c.config!.OnBuild ?? null, null);
    assert.match(r.stderr, /RUN echo triggered/);
    const trigger = c.history.find((h) => h.created_by?.startsWith('RUN ') && h.created_by.includes('echo triggered'));
    assert.ok(trigger && !trigger.empty_layer, JSON.stringify(c.history));
    // The trigger ran with meta's SHELL and USER.
    assert.match(trigger.created_by!, /^RUN \/bin\/sh -ec echo triggered/);
    const fs = addedFiles(await stored('child'));
    const f = file(fs, 'tmp/onbuild.txt');
    assert.equal(f.content, 'triggered\n');
    assert.equal(f.uid, 1000);
  });

  // -------------------------------------------------------------------------------------------------------------
  // ARG

  test('ARG scoping: global ARG in FROM, redeclared per stage, --build-arg override, valueless redeclaration, TARGETARCH etc., ENV over ARG', async () => {
    const r = await argsBuild();
    const c = await skopeoConfig('args');
    const env = c.config!.Env!;
    assert.deepEqual(env, [
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      // From stage "other" (FROM ${BASE} with --build-arg BASE=other): GLOBAL was not redeclared there, LOCAL is another stage's.
      'SECOND=xxx',
      'FROM_GLOBAL=from-cli', 'G2=g2-default', 'LOCAL=l-default', 'NR=xx', `ARCH=${ARCH}`, 'OS=linux', `PLAT=linux/${ARCH}`, `BARCH=${ARCH}`,
      'SHADOW=env-value',
    ]);
    const run = [...parseSteps(r.stderr).values()].find((s) => s.header.includes('RUN echo'));
    assert.ok(run, r.stderr);
    assert.deepEqual(run.output, [`run: GLOBAL=from-cli LOCAL=l-default SHADOW=env-value NR=xx ARCH=${ARCH}`]);
    // BuildKit's history for a RUN that sees ARGs: `RUN |N K=V… cmd`.
    const h = c.history.find((e) => e.created_by?.startsWith('RUN '));
    assert.match(h!.created_by!, /^RUN \|\d+ [^\n]*GLOBAL=from-cli[^\n]* \/bin\/sh -c echo "run:/);
  });

  test('an unused --build-arg is named in one warning on stderr', async () => {
    const r = await argsBuild();
    const warnings = r.stderr.split('\n').filter((l) => l.includes('warning'));
    assert.equal(warnings.length, 1, r.stderr);
    assert.match(warnings[0]!, /^hoist: warning: .*\[UNUSED_ONE\]/);
  });

  // -------------------------------------------------------------------------------------------------------------
  // RUN, WORKDIR, USER, SHELL

  test('WORKDIR makes missing directories (absolute and relative) and RUN starts there', async () => {
    const r = await runsBuild();
    const steps = [...parseSteps(r.stderr).values()];
    assert.deepEqual(steps.find((s) => s.header.endsWith('] RUN pwd'))!.output, ['/made/by/workdir/sub']);
    const fs = addedFiles(await stored('runs'));
    for (const d of ['made', 'made/by', 'made/by/workdir', 'made/by/workdir/sub']) {
      assert.equal(file(fs, d).type, 'directory', d);
      assert.equal(file(fs, d).mode, 0o755, d);
    }
    const c = await skopeoConfig('runs');
    assert.equal(c.config!.WorkingDir, '/userwd');
  });

  test('RUN exec form, SHELL for later shell forms, heredoc RUNs', async () => {
    const r = await runsBuild();
    const steps = [...parseSteps(r.stderr).values()];
    const out = (re: RegExp): string[] => steps.find((s) => re.test(s.header))!.output;
    assert.deepEqual(out(/RUN \["\/bin\/sh"/), ['exec-form:zero:one']);
    // SHELL ["/bin/sh", "-xc"]: the trace line (on stderr, so in either order) shows the shell in use.
    assert.deepEqual(out(/RUN echo shell-form/).sort(), ['+ echo shell-form', 'shell-form']);
    const fs = addedFiles(await stored('runs'));
    assert.equal(file(fs, 'tmp/heredoc.txt').content, 'heredoc-1\nheredoc-2\n');
    assert.equal(file(fs, 'tmp/heredoc2.txt').content, 'line one 2\n');
    const c = await skopeoConfig('runs');
    const createdBy = c.history.map((h) => h.created_by);
    assert.ok(createdBy.includes('RUN /bin/sh -c echo exec-form:$0:$1 zero one # buildkit'), createdBy.join('\n'));
    assert.ok(createdBy.includes('RUN /bin/sh -xc echo shell-form # buildkit'), createdBy.join('\n'));
    assert.deepEqual(c.config!.Cmd, ['/bin/sh', '-xc', 'echo "$(id -u) in $(pwd)"']);
  });

  test('USER then RUN runs as that user; a WORKDIR made after USER belongs to the user', async () => {
    const r = await runsBuild();
    const steps = [...parseSteps(r.stderr).values()];
    const run = steps.find((s) => s.header.includes('RUN id -u'))!;
    // -x traces first; then the ids.
    assert.deepEqual(run.output.filter((l) => !l.startsWith('+ ')), ['1000', '1000']);
    const fs = addedFiles(await stored('runs'));
    assert.equal(file(fs, 'userwd').uid, 1000);
    assert.equal(file(fs, 'userwd/mine').uid, 1000);
  });

  // -------------------------------------------------------------------------------------------------------------
  // COPY / ADD

  test('COPY --chown by name (through the image\'s /etc/passwd and /etc/group, copied in first), user only, numeric', async () => {
    const fs = await copyFs();
    assert.match(file(fs, 'etc/passwd').content, /^app:x:1234:2345:/m);
    const own = (p: string): [number, number] => [file(fs, p).uid, file(fs, p).gid];
    assert.deepEqual(own('owned/a.txt'), [1234, 3456]);
    assert.deepEqual(own('owned'), [1234, 3456], 'the dest directory COPY creates takes the --chown owner');
    assert.deepEqual(own('owned/by-name-only'), [1234, 2345]);
    assert.deepEqual(own('owned/numeric'), [1234, 77]);
    // Context files are root's in the image whoever owns them on the host.
    assert.deepEqual(own('glob/a.txt'), [0, 0]);
  });

  test('COPY --chmod octal and symbolic', async () => {
    const fs = await copyFs();
    assert.equal(file(fs, 'modes/octal').mode, 0o640);
    assert.equal(file(fs, 'modes/symbolic').mode, 0o750);
    assert.equal(file(fs, 'modes/plus-x').mode, 0o755);
    assert.equal(file(fs, 'glob/b.txt').mode, 0o644);
  });

  test('COPY globs, --exclude, --parents (with a /./ pivot)', async () => {
    const fs = await copyFs();
    const under = (dir: string): string[] => [...fs.keys()].filter((k) => k.startsWith(`${dir}/`)).sort();
    assert.deepEqual(under('glob'), ['glob/a.txt', 'glob/b.txt', 'glob/skip.txt']);
    assert.deepEqual(under('glob2'), ['glob2/a.txt', 'glob2/b.txt', 'glob2/d.txt']);
    assert.deepEqual(under('excl'), ['excl/a.txt', 'excl/b.txt', 'excl/sub', 'excl/sub/d.txt']);
    assert.deepEqual(under('par'), ['par/p', 'par/p/x', 'par/p/x/one.txt', 'par/p/y', 'par/p/y/two.txt']);
    assert.deepEqual(under('piv'), ['piv/x', 'piv/x/one.txt']);
    assert.equal(file(fs, 'par/p/y/two.txt').content, 'two\n');
  });

  test('COPY destination rules: a file name, a trailing slash, an existing directory, a directory\'s contents', async () => {
    const fs = await copyFs();
    assert.equal(file(fs, 'dest-file').type, 'file');
    assert.equal(file(fs, 'dest-file').content, 'a\n');
    assert.equal(file(fs, 'dest-dir').type, 'directory');
    assert.equal(file(fs, 'dest-dir/a.txt').content, 'a\n');
    assert.equal(file(fs, 'etc/a.txt').content, 'a\n', '/etc exists in busybox: the file goes inside');
    assert.ok(!fs.has('subcontents/sub'));
    assert.equal(file(fs, 'subcontents/d.txt').content, 'd\n');
    assert.equal(file(fs, 'whole/sub/d.txt').content, 'd\n');
    assert.equal(file(fs, 'whole/a.txt').content, 'a\n');
  });

  test('COPY heredocs: expanded, quoted (literal), several in one COPY', async () => {
    const fs = await copyFs();
    assert.equal(file(fs, 'heredoc/expanded.txt').content, 'value=expanded-value\n');
    assert.equal(file(fs, 'heredoc/literal.txt').content, 'value=${HV}\n');
    assert.equal(file(fs, 'heredoc/multi/one.txt').content, 'first\n');
    assert.equal(file(fs, 'heredoc/multi/two.txt').content, 'second\n');
    assert.equal(file(fs, 'heredoc/expanded.txt').mode, 0o644);
  });

  test('ADD extracts a local tar.gz (owners and modes kept), copies other files as they are', async () => {
    const fs = await copyFs();
    const f = file(fs, 'unpacked/dir/inner.txt');
    assert.equal(f.content, 'inside the archive\n');
    assert.deepEqual([f.mode, f.uid, f.gid], [0o640, 42, 43]);
    assert.equal(file(fs, 'unpacked/dir').mode, 0o750);
    assert.equal(file(fs, 'added-plain').content, 'a\n');
    assert.ok(!fs.has('unpacked/arch.tar.gz'));
  });

  test('ADD URL with a good --checksum (and without one): mode 0600, mtime from Last-Modified', async () => {
    const fs = await copyFs();
    const f = file(fs, 'fetched/file.txt');
    assert.equal(f.content, DOWNLOAD);
    assert.equal(f.mode, 0o600);
    assert.equal(f.mtime, 1_600_000_000);
    assert.equal(file(fs, 'fetched-nosum').content, DOWNLOAD);
  });

  test('ADD URL with a wrong --checksum fails, naming the step, and tags nothing', async () => {
    const bad = `sha256:${'0'.repeat(64)}`;
    const r = await hoist(['build', '--progress', 'plain', '-t', 'badsum', '-'], {
      input: `FROM busybox\nADD --checksum=${bad} http://127.0.0.1:${port}/dl/file.txt /x\n`,
    });
    assert.notEqual(r.code, 0, show(r));
    // One line: where in the Dockerfile, the URL, both digests.
    const line = r.stderr.split('\n').filter((l) => l.startsWith('hoist: '));
    assert.equal(line.length, 1, r.stderr);
    assert.match(line[0]!, /^hoist: Dockerfile:2:1: ADD http:\/\/127\.0\.0\.1:\d+\/dl\/file\.txt: digest mismatch/);
    assert.ok(line[0]!.includes(DOWNLOAD_SUM) && line[0]!.includes(bad), r.stderr);
    assert.equal(r.stdout, '');
    const index = await readFile(path.join(root, 'index.json'), 'utf8');
    assert.ok(!index.includes('library/badsum'), 'no image was tagged');
  });

  // -------------------------------------------------------------------------------------------------------------
  // Cache: one context and base, changed step by step.

  describe('cache', { concurrency: false }, () => {
    let ctx: string;
    let first: string;
    const DF = 'FROM cachebase\nARG V=1\nCOPY a.txt /a.txt\nRUN echo "v=$V" > /v.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt /v.txt > /all.txt\n';
    // #1 FROM, #2 COPY a.txt, #3 RUN v, #4 COPY b.txt, #5 RUN all
    const cbuild = (extra: string[] = []): Promise<RunResult> => ok(['build', '--progress', 'plain', '-t', 'cached', ...extra, ctx]);

    before(async () => {
      if (skip) return;
      ctx = path.join(tmp.dir, 'cache-ctx');
      await writeTree(ctx, { Dockerfile: DF, 'a.txt': 'a\n', 'b.txt': 'b\n' });
    });

    test('a cold build runs every step', async () => {
      const r = await cbuild();
      first = imageId(r);
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [], ran: [2, 3, 4, 5] });
      assert.equal(addedFiles(await stored('cached')).get('all.txt')?.content, 'a\nb\nv=1\n');
    });

    test('a rebuild with nothing changed: every step CACHED, the same image ID', async () => {
      const r = await cbuild();
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [2, 3, 4, 5], ran: [] });
      assert.equal(imageId(r), first);
    });

    test('-q prints only the image ID on stdout and nothing on stderr', async () => {
      const r = await cbuild(['-q']);
      assert.equal(r.stdout, `${first}\n`);
      assert.equal(r.stderr, '');
    });

    test('a changed context file re-runs its COPY and what follows', async () => {
      await writeFile(path.join(ctx, 'b.txt'), 'b changed\n');
      const r = await cbuild();
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [2, 3], ran: [4, 5] });
      assert.notEqual(imageId(r), first);
      assert.equal(addedFiles(await stored('cached')).get('all.txt')?.content, 'a\nb changed\nv=1\n');
    });

    test('a changed --build-arg re-runs the first RUN that sees it and what follows, not the COPY before', async () => {
      const r = await cbuild(['--build-arg', 'V=2']);
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [2], ran: [3, 4, 5] });
      assert.equal(addedFiles(await stored('cached')).get('all.txt')?.content, 'a\nb changed\nv=2\n');
      // Back to the default: all from the cache again.
      const back = await cbuild();
      assert.deepEqual(cachedAndRun(back.stderr), { cached: [2, 3, 4, 5], ran: [] });
    });

    test('a changed base image re-runs every step', async () => {
      await ok(['copy', '-q', `oci:${layout}:busybox2`, 'cachebase']);
      const r = await cbuild();
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [], ran: [2, 3, 4, 5] });
      const img = await stored('cached');
      assert.equal(img.layers.length, 2 + 4);
    });

    test('--no-cache re-runs every step', async () => {
      const r = await cbuild(['--no-cache']);
      assert.deepEqual(cachedAndRun(r.stderr), { cached: [], ran: [2, 3, 4, 5] });
    });
  });

  // -------------------------------------------------------------------------------------------------------------
  // Reproducibility

  describe('reproducible builds', { concurrency: false }, () => {
    const TS = 1_700_000_000;
    const OLD = 1_600_000_000;
    let ctx: string;
    let digest: string;
    const DF = 'FROM busybox\nCOPY f.txt old.txt /files/\nRUN echo hi > /new.txt && mkdir -p /newdir/sub\nWORKDIR /w\nENV X=1\n';
    const rbuild = (extra: string[], o: HoistOpts = {}): Promise<RunResult> => ok(['build', '--progress', 'plain', '-t', 'repro', ...extra, ctx], o);

    before(async () => {
      if (skip) return;
      ctx = path.join(tmp.dir, 'repro-ctx');
      await writeTree(ctx, { Dockerfile: DF, 'f.txt': 'new file\n', 'old.txt': 'old file\n' });
      await utimes(path.join(ctx, 'old.txt'), OLD, OLD);
    });

    test('--timestamp: created and history use that time; new mtimes are clamped, older ones kept', async () => {
      const r = await rbuild(['--timestamp', String(TS)]);
      digest = imageId(r);
      const img = await stored('repro');
      assert.equal(img.digest, digest);
      const when = new Date(TS * 1000).getTime();
      assert.equal(Date.parse(img.config.created!), when);
      const ours = img.config.history.slice(1);
      assert.equal(ours.length, 4);
      for (const h of ours) assert.equal(Date.parse(h.created!), when, JSON.stringify(h));
      const fs = addedFiles(img);
      for (const e of fs.values()) assert.ok(e.mtime <= TS, `${e.name} mtime ${e.mtime} > ${TS}`);
      assert.equal(file(fs, 'files/f.txt').mtime, TS);
      assert.equal(file(fs, 'files/old.txt').mtime, OLD);
      assert.equal(file(fs, 'new.txt').mtime, TS);
      assert.equal(file(fs, 'newdir/sub').mtime, TS);
      assert.equal(file(fs, 'w').mtime, TS);
    });

    test('the cached rebuild and a --no-cache build give the same digest', async () => {
      const cached = await rbuild(['--timestamp', String(TS)]);
      assert.deepEqual(cachedAndRun(cached.stderr).ran, []);
      assert.equal(imageId(cached), digest);
      const fresh = await rbuild(['--timestamp', String(TS), '--no-cache']);
      assert.deepEqual(cachedAndRun(fresh.stderr).cached, []);
      assert.equal(imageId(fresh), digest);
    });

    test('SOURCE_DATE_EPOCH does what --timestamp does (cached and --no-cache)', async () => {
      const env = { SOURCE_DATE_EPOCH: String(TS) };
      assert.equal(imageId(await rbuild([], { env })), digest);
      assert.equal(imageId(await rbuild(['--no-cache'], { env })), digest);
    });

    test('a second, fresh store gives the same digest', async () => {
      const store2 = path.join(tmp.dir, 'store2');
      await ok(['copy', '-q', `oci:${layout}:busybox`, 'busybox'], { store: store2 });
      const r = await rbuild(['--timestamp', String(TS)], { store: store2 });
      assert.deepEqual(cachedAndRun(r.stderr).cached, []);
      assert.equal(imageId(r), digest);
      const a = await stored('repro');
      const b = await stored('repro', store2);
      assert.equal(a.configText, b.configText);
    });
  });

  // -------------------------------------------------------------------------------------------------------------
  // Running what was built

  test('the README\'s command: hoist build -t hello testdata/hello, then hoist run --rm hello', async () => {
    const r = await once('hello', () => ok(['build', '-t', 'hello', path.join(REPO_ROOT, 'testdata/hello')]));
    imageId(r);
    assert.match(r.stderr, /#\d+ \[0 \d+\/\d+\] RUN chmod 0755 hello\.sh/, 'plain progress when stderr is not a TTY');
    const run = await ok(['run', '--rm', 'hello']);
    assert.equal(run.stdout, 'hello from a hoist build (built by 0 in /app)\n');
  });

  test('hoist run: USER, WORKDIR and a SHELL-form CMD of a built image', async () => {
    await runsBuild();
    const r = await ok(['run', '--rm', 'runs']);
    assert.equal(r.stdout, '1000 in /userwd\n');
  });

  test('podman run (as the same user, its own --root/--runroot) runs images hoist built', { skip: existsSync('/usr/bin/podman') ? false : 'podman is not installed' }, async () => {
    await once('hello', () => ok(['build', '-t', 'hello', path.join(REPO_ROOT, 'testdata/hello')]));
    await runsBuild();
    const pod = path.join(tmp.dir, 'podman');
    await mkdirFor(user!, pod);
    const storage = ['--root', path.join(pod, 'root'), '--runroot', path.join(pod, 'run'), '--storage-driver', 'vfs'];
    // Debian's podman defaults to crun, which refuses to start here; no cgroup delegation for the user; no network.
    const podman = (args: string[]): Promise<RunResult> =>
      runAs(user!, 'podman', [...storage, '--cgroup-manager', 'cgroupfs', '--events-backend', 'none', ...args]);
    for (const name of ['hello', 'runs']) {
      const cp = await runAs(user!, 'skopeo', ['copy', '-q', `oci:${root}:${fullName(name)}`,
        `containers-storage:[vfs@${path.join(pod, 'root')}+${path.join(pod, 'run')}]localhost/${name}:latest`]);
      assert.equal(cp.code, 0, show(cp));
    }
    const hello = await podman(['run', '--rm', '--runtime', 'runc', '--network', 'none', 'localhost/hello:latest']);
    assert.equal(hello.code, 0, show(hello));
    assert.equal(hello.stdout, 'hello from a hoist build (built by 0 in /app)\n');
    const runs = await podman(['run', '--rm', '--runtime', 'runc', '--network', 'none', 'localhost/runs:latest']);
    assert.equal(runs.code, 0, show(runs));
    assert.equal(runs.stdout, '1000 in /userwd\n');
  });
});
