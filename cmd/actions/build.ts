/**
 * `hoist build [flags] CONTEXT` — docker build / buildah bud flags. Progress on stderr; the image ID (the manifest
 * digest, as `hoist images` shows it) on stdout.
 */
import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { registryAccess, type RegistryFlags } from '../registry-flags.ts';
import type { PolicyFlags } from '../policy-flags.ts';
import type { ImagePolicy } from '../../src/sign/policy-check.ts';
import type { RegistryAccess } from '../../src/transport/types.ts';

interface BuildFlags extends RegistryFlags, PolicyFlags {
  tag: string[];
  file?: string;
  buildArg: string[];
  target?: string;
  platform?: string;
  label: string[];
  annotation: string[];
  secret: string[];
  network?: string;
  cache?: boolean;
  pull?: string | boolean;
  iidfile?: string;
  squash?: boolean;
  timestamp?: string;
  sourceDateEpoch?: string;
  format?: string;
  output: string[];
  push?: boolean;
  quiet?: boolean;
  progress: string;
  compress?: string;
  cacheTtl?: string;
  runtime?: string;
  layers?: string | boolean;
}

export default async function build(g: GlobalOptions, contextArg: string | undefined, flags: BuildFlags): Promise<number> {
  const path = await import('node:path');
  const { readFile, writeFile, stat } = await import('node:fs/promises');
  const { Store } = await import('../../src/store/store.ts');
  const { storeRoot } = await import('../../src/store/root.ts');
  const { parseDockerfile } = await import('../../src/dockerfile/parse.ts');
  const { runBuild } = await import('../../src/build/builder.ts');
  const { writeImage, parseOutput, exportImage } = await import('../../src/build/image-write.ts');
  const { parseDuration } = await import('../../src/store/build-cache.ts');
  const { parsePlatform } = await import('../../src/oci/platform.ts');
  const { makeBuildProgress } = await import('../build-progress.ts');

  if (contextArg === undefined) throw new HoistError('USAGE', 'build needs a context: hoist build [-t NAME] DIR (or - to read a Dockerfile from stdin)', { exitCode: 2 });
  // The Dockerfile: -f FILE (relative to the current directory, as docker), -f - / context - (stdin), else CONTEXT/Dockerfile or Containerfile.
  let contextDir: string | undefined;
  let dockerfileText: string;
  let dockerfilePath: string | undefined;
  if (contextArg === '-') {
    if (flags.file !== undefined && flags.file !== '-') throw new HoistError('USAGE', 'build -: the Dockerfile comes from stdin; drop -f, or give a context directory', { exitCode: 2 });
    dockerfileText = await readStdin();
  } else {
    contextDir = path.resolve(contextArg);
    const st = await stat(contextDir).catch(() => undefined);
    if (!st?.isDirectory()) throw new HoistError('NOT_FOUND', `build context ${contextArg}: not a directory; pass the directory holding the Dockerfile and the files it copies`, { exitCode: 1 });
    if (flags.file === '-') {
      dockerfileText = await readStdin();
    } else {
      const candidates = flags.file !== undefined ? [path.resolve(flags.file)] : [path.join(contextDir, 'Dockerfile'), path.join(contextDir, 'Containerfile')];
      let found: string | undefined;
      for (const c of candidates) if ((await stat(c).catch(() => undefined))?.isFile()) { found = c; break; }
      if (found === undefined) {
        throw new HoistError('NOT_FOUND', flags.file !== undefined ? `-f ${flags.file}: no such file` : `no Dockerfile or Containerfile in ${contextArg}; add one or pass -f FILE`);
      }
      dockerfilePath = found;
      dockerfileText = await readFile(found, 'utf8');
    }
  }
  const shownFile = dockerfilePath ? path.relative(process.cwd(), dockerfilePath) || dockerfilePath : 'Dockerfile';
  const dockerfile = parseDockerfile(dockerfileText, shownFile);

  const buildArgs = new Map<string, string>();
  for (const a of flags.buildArg) {
    const eq = a.indexOf('=');
    if (eq < 0) {
      // docker: --build-arg NAME takes NAME's value from the environment, and is ignored when it's unset.
      const v = process.env[a];
      if (v !== undefined) buildArgs.set(a, v);
    } else buildArgs.set(a.slice(0, eq), a.slice(eq + 1));
  }
  const keyValues = (list: string[], flag: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const kv of list) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new HoistError('BAD_FLAG', `${flag} ${kv}: expected KEY=VALUE`, { exitCode: 2 });
      out[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return out;
  };
  const secrets = new Map<string, { file?: string; env?: string }>();
  for (const s of flags.secret) {
    const kv = new Map(s.split(',').map((p) => {
      const eq = p.indexOf('=');
      return [eq < 0 ? p : p.slice(0, eq), eq < 0 ? '' : p.slice(eq + 1)] as const;
    }));
    const id = kv.get('id');
    if (!id) throw new HoistError('BAD_FLAG', `--secret ${s}: needs id=ID and src=FILE or env=VAR`, { exitCode: 2 });
    const src = kv.get('src') ?? kv.get('source');
    const env = kv.get('env');
    if (src !== undefined) {
      if (!(await stat(src).catch(() => undefined))?.isFile()) throw new HoistError('NOT_FOUND', `--secret ${s}: ${src} is not a file`, { exitCode: 2 });
      secrets.set(id, { file: path.resolve(src) });
    } else if (env !== undefined) secrets.set(id, { env });
    else if (process.env[id] !== undefined) secrets.set(id, { env: id });
    else throw new HoistError('BAD_FLAG', `--secret ${s}: give src=FILE or env=VAR`, { exitCode: 2 });
  }
  // undefined (and `default`): each RUN's own --network decides, else the runtime's default (host).
  const network = flags.network === undefined || flags.network === 'default' ? undefined
    : flags.network === 'host' || flags.network === 'none' ? flags.network : badFlag(`--network ${flags.network}: use default, host or none`);
  const pull = flags.pull === undefined || flags.pull === 'missing' || flags.pull === false || flags.pull === 'false' ? 'missing'
    : flags.pull === true || flags.pull === 'true' || flags.pull === 'always' || flags.pull === 'newer' ? 'always'
    : flags.pull === 'never' ? 'never' : badFlag(`--pull=${String(flags.pull)}: use always, missing, never (or true/false)`);
  const tsRaw = flags.timestamp ?? flags.sourceDateEpoch ?? process.env['SOURCE_DATE_EPOCH'];
  let timestamp: number | undefined;
  if (tsRaw !== undefined && tsRaw !== '') {
    if (!/^\d+$/.test(tsRaw)) badFlag(`--timestamp ${tsRaw}: expected seconds since the epoch`);
    timestamp = Number(tsRaw);
  }
  const format = flags.format ?? process.env['BUILDAH_FORMAT'] ?? 'oci';
  if (format !== 'oci' && format !== 'docker') badFlag(`--format ${format}: use oci or docker`);
  const compression = flags.compress ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'zstd') badFlag(`--compress ${compression}: use gzip or zstd`);
  let cacheTtlMs: number | undefined;
  if (flags.cacheTtl !== undefined) {
    cacheTtlMs = parseDuration(flags.cacheTtl);
    if (cacheTtlMs === undefined) badFlag(`--cache-ttl ${flags.cacheTtl}: expected a duration such as 30m or 2h`);
  }
  const outputs = flags.output.map(parseOutput);
  if (flags.push) outputs.push({ type: 'registry' });
  // FROM pulls and pushes both use the registry flags.
  const registry = await registryAccess(flags);

  const quiet = flags.quiet ?? false;
  const progress = makeBuildProgress(quiet ? 'quiet' : flags.progress);
  const store = await Store.open(storeRoot(g.root));
  let id: string;
  try {
    const outcome = await runBuild({
      store, dockerfile, ...(contextDir !== undefined ? { contextDir } : {}), ...(dockerfilePath !== undefined ? { dockerfilePath } : {}),
      buildArgs, ...(flags.target !== undefined ? { target: flags.target } : {}),
      ...(flags.platform !== undefined ? { platform: parsePlatform(flags.platform) } : {}),
      secrets, ...(network !== undefined ? { network } : {}), noCache: flags.cache === false, pull,
      ...(timestamp !== undefined ? { timestamp } : {}), compression: compression as 'gzip' | 'zstd',
      ...(cacheTtlMs !== undefined ? { cacheTtlMs } : {}), registry,
      ...(flags.runtime !== undefined ? { runtime: flags.runtime } : {}), debug: g.debug,
      admit: admitPulls(flags, g, store.root, registry),
      events: (e) => progress.event(e),
    });
    const created = timestamp !== undefined ? new Date(timestamp * 1000).toISOString() : outcome.created || new Date().toISOString();
    const { mkdtemp, rm } = await import('node:fs/promises');
    let { layers, config } = outcome.state;
    // The squashed layer's blob is protected from a concurrent prune until writeImage has named the image.
    const lease = flags.squash ? await store.layout.lease() : undefined;
    let written: Awaited<ReturnType<typeof writeImage>>;
    try {
      const added = layers.length - outcome.base.layers;
      if (flags.squash && added > 0) {
        const { squashLayers, squashedConfig } = await import('../../src/build/squash.ts');
        const tmp = await mkdtemp(path.join(store.root, '.tmp-squash-'));
        try {
          const layer = await squashLayers({
            layout: store.layout, base: layers.slice(0, outcome.base.layers), added: layers.slice(outcome.base.layers), tmpDir: tmp,
            indexCacheDir: path.join(store.root, 'build-cache', 'layer-index'), compression: compression as 'gzip' | 'zstd', ...(lease ? { lease } : {}),
          });
          config = squashedConfig(config, outcome.base, layer, added, created);
          layers = [...layers.slice(0, outcome.base.layers), ...(layer ? [layer] : [])];
        } finally {
          await rm(tmp, { recursive: true, force: true });
        }
      }
      written = await writeImage(store, layers, config, {
        format: format as 'oci' | 'docker', labels: keyValues(flags.label, '--label'), annotations: keyValues(flags.annotation, '--annotation'),
        created, tags: flags.tag, warn: (message) => progress.event({ type: 'warning', message }),
      });
    } finally {
      await lease?.release().catch(() => {});
    }
    id = written.digest;
    for (const o of outputs) {
      const tmp = await mkdtemp(path.join(store.root, '.tmp-export-'));
      try {
        await exportImage(store, written, layers, o, registry, tmp);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    }
    for (const n of written.names) progress.event({ type: 'info', message: `naming to ${n}` });
  } finally {
    progress.finish();
  }
  if (flags.iidfile) await writeFile(flags.iidfile, id);
  process.stdout.write(`${id}\n`);
  return 0;
}

/**
 * The signature policy for images FROM (and COPY --from) pulls: checked at pull time for the docker:// reference,
 * before the image is stored, like `hoist run` and buildah/podman (containers/image checks the policy in its copy,
 * which only a pull runs); an image already in the store is used as it is. The policy is read at the first pull.
 */
function admitPulls(flags: PolicyFlags, globalFlags: PolicyFlags, storeRoot: string, registry: RegistryAccess): (name: string, transport: 'docker' | 'store', digest: string) => Promise<void> {
  let policy: Promise<ImagePolicy> | undefined;
  return async (name, transport, digest) => {
    if (transport === 'store') return;
    const { loadImagePolicy } = await import('../policy-flags.ts');
    policy ??= loadImagePolicy(flags, storeRoot, globalFlags);
    const p = await policy;
    if (p.file === undefined) return;
    const { openSource } = await import('../../src/transport/index.ts');
    const ref = { transport: 'docker' as const, ref: name };
    // The signatures of the digest base-image.ts resolved (and then copies): read through a source of their own.
    const src = await openSource(ref, { registry });
    try {
      await p.check(ref, digest, src);
    } finally {
      await src.close();
    }
  };
}

function badFlag(message: string): never {
  throw new HoistError('BAD_FLAG', message, { exitCode: 2 });
}

async function readStdin(): Promise<string> {
  const { readAll } = await import('../../src/util/stream.ts');
  const tooLarge = (): Error => new HoistError('TOO_LARGE', 'the Dockerfile on stdin is over 16 MiB; that is not a Dockerfile', { exitCode: 2 });
  return (await readAll(process.stdin, 16 * 1024 * 1024, tooLarge)).toString('utf8');
}
