/**
 * Runs a Dockerfile: the stages the target needs, each as soon as what it reads is ready (independent stages run in
 * parallel), every filesystem step looked up in the build cache first. RUN runs in the rootless runtime; COPY/ADD
 * and WORKDIR write their layer straight from the context or the source image, without a container.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { randomBytes, createHash } from 'node:crypto';
import { HoistError } from '../errors.ts';
import { expandWord, expandWords } from '../dockerfile/shell-lex.ts';
import type { CopyInstruction, Dockerfile, Instruction, RunInstruction } from '../dockerfile/types.ts';
import { formatPlatform, hostPlatform, parsePlatform } from '../oci/platform.ts';
import type { ImageConfig, Platform } from '../oci/types.ts';
import type { Store } from '../store/store.ts';
import type { Lease } from '../store/lease.ts';
import type { RegistryAccess } from '../transport/types.ts';
import type { Mount } from '../runtime/spec.ts';
import { BuildCache, CACHE_DIR, stepKey, type CacheEntry } from '../store/build-cache.ts';
import { resolveImage, type BaseImage } from './base-image.ts';
import { flagBool, flagValue, flagValues, parseGoDuration } from '../dockerfile/flags.ts';
import { expandAt, PROXY_ARGS, planBuild, platformArgs, posString, stageRef, type BuildPlan, type PlannedStage } from './plan.ts';
import { parseRunMount, type RunMount } from './run-mount.ts';
import {
  addHistory, addLayer, cloneState, containerConfig, DEFAULT_SHELL, envMap, inheritConfig, scratchConfig, setEnv,
  type BuiltLayer, type ImageState,
} from './state.ts';
import type { SourceMatch, SourceTree } from './source.ts';
import type { LayerTree } from './layer-tree.ts';
import type { BuildContext } from './context.ts';
import type { ChecksumCache } from './checksum-cache.ts';

export interface SecretSource {
  file?: string;
  env?: string;
}

export interface BuildOptions {
  store: Store;
  dockerfile: Dockerfile;
  /** The context directory; undefined when the Dockerfile came on stdin with no context (`hoist build -`). */
  contextDir?: string;
  /** The Dockerfile's path, for `<Dockerfile>.dockerignore`. */
  dockerfilePath?: string;
  buildArgs: Map<string, string>;
  target?: string;
  platform?: Platform;
  secrets: Map<string, SecretSource>;
  /** --network: the default for RUN steps. */
  network?: 'host' | 'none';
  noCache: boolean;
  pull: 'missing' | 'always' | 'never';
  /** Seconds since the epoch: created times, and newer file mtimes clamped (SOURCE_DATE_EPOCH). */
  timestamp?: number;
  compression: 'gzip' | 'zstd';
  cacheTtlMs?: number;
  registry?: RegistryAccess;
  runtime?: string;
  debug: boolean;
  events: (e: BuildEvent) => void;
  /** Signature policy for images the build pulls or reads (FROM, COPY --from=image). */
  admit?: (name: string, transport: 'docker' | 'store', digest: string) => Promise<void>;
}

export type BuildEvent =
  | { type: 'step'; id: number; stage: string; n: number; of: number; text: string }
  | { type: 'cached'; id: number }
  | { type: 'done'; id: number; ms: number }
  /** stream 2: the process's stderr (progress keeps partial lines per stream, so the two never mix within a line). */
  | { type: 'output'; id: number; chunk: Buffer; stream?: 1 | 2 }
  | { type: 'warning'; message: string }
  | { type: 'info'; message: string };

export interface StageResult {
  state: ImageState;
  label: string;
  /** What of `state` came from outside the build: the layers and history entries of the image its FROM chain starts at. */
  base: { layers: number; history: number };
}

export interface BuildOutcome {
  /** The target stage's image: layers, config (history included, `created` not yet set) and key. */
  state: ImageState;
  platform: Platform;
  /** The created time of the newest step, for the config's `created` (a fully cached rebuild gives the same image). */
  created: string;
  /** The layers and history entries of `state` that the base image brought (--squash leaves them alone). */
  base: { layers: number; history: number };
}

/** In-memory budget for small files read from layers (LayerTreeOptions.memoryBytes), per source tree. */
const TREE_MEMORY_BYTES = 32 * 1024 * 1024;

/**
 * A layer tar being made by a process: `done` settles when the process is over (rejecting when it failed), and
 * `after` is called once the tar is stored, with the layer's diffID (undefined: no layer, or a failure).
 */
interface MadeLayer {
  tar: Readable;
  /**
   * The layer's index, filled in by the tar's writer as it writes (complete once the tar has been read to its end):
   * then the tar is not parsed again to index it.
   */
  index?: import('./layer-tree.ts').IndexEntry[];
  done?: Promise<void>;
  after?: (diffID: string | undefined) => Promise<void>;
  /** Unpack the layer into the snapshot cache while it is written, for a later RUN of the stage (big layers). */
  snapshot?: boolean;
}


/** Entries from which a COPY layer is worth unpacking alongside (snapshotWriter): smaller ones the RUN unpacks in no time. */
const SNAPSHOT_ALONG_ENTRIES = 256;

/** Steps that change files; the others change only the config and are not numbered in progress. */
const FS_STEPS = new Set(['RUN', 'COPY', 'ADD', 'WORKDIR']);

export async function runBuild(o: BuildOptions): Promise<BuildOutcome> {
  const b = new Builder(o);
  try {
    return await b.run();
  } finally {
    await b.close();
  }
}

class Builder {
  readonly o: BuildOptions;
  readonly df: Dockerfile;
  readonly plan: BuildPlan;
  readonly target: Platform;
  readonly cache: BuildCache;
  readonly tmp: string;
  #lease: Lease | undefined;
  #steps = 0;
  #stages = new Map<number, Promise<StageResult>>();
  #images = new Map<string, Promise<BaseImage>>();
  #trees = new Map<string, Promise<LayerTree>>();
  #context: Promise<BuildContext> | undefined;
  #checksums: Promise<ChecksumCache> | undefined;

  constructor(o: BuildOptions) {
    this.o = o;
    this.df = o.dockerfile;
    const host = hostPlatform();
    this.target = o.platform ?? host;
    this.plan = planBuild(this.df, { buildArgs: o.buildArgs, ...(o.target !== undefined ? { target: o.target } : {}), platform: platformArgs(this.target, host) });
    this.cache = new BuildCache(o.store.root, { disabled: o.noCache, ...(o.cacheTtlMs !== undefined ? { ttlMs: o.cacheTtlMs } : {}) });
    this.tmp = path.join(o.store.root, CACHE_DIR, 'tmp', `${process.pid}-${randomBytes(4).toString('hex')}`);
  }

  async run(): Promise<BuildOutcome> {
    await mkdir(this.tmp, { recursive: true, mode: 0o700 });
    this.#lease = await this.o.store.layout.lease();
    const syntax = this.df.directives['syntax'];
    if (syntax !== undefined) this.o.events({ type: 'info', message: `# syntax=${syntax} noted; hoist has its own Dockerfile frontend and does not fetch it` });
    // Every needed stage starts now; each waits only for the stages it reads from.
    for (const i of this.plan.needed) void this.stage(i).catch(() => {});
    const prefetch = this.#prefetchContext();
    const result = await this.stage(this.plan.target);
    await prefetch;
    await Promise.all(this.plan.needed.map((i) => this.stage(i)));
    const unused = [...this.o.buildArgs.keys()].filter((k) => !this.plan.declaredArgs.has(k) && !PROXY_ARGS.includes(k) && !platformArgs(this.target, this.target).has(k));
    if (unused.length) this.o.events({ type: 'warning', message: `one or more build-args [${unused.join(' ')}] were not consumed` });
    if (this.#checksums) await (await this.#checksums).save();
    const created = result.state.config.history?.map((h) => h.created ?? '').reduce((a, c) => (c > a ? c : a), '') ?? '';
    return { state: result.state, platform: this.target, created, base: result.base };
  }

  async close(): Promise<void> {
    await this.snapshotsReady();
    await this.#lease?.release().catch(() => {});
    await rm(this.tmp, { recursive: true, force: true }).catch(() => {});
  }

  stage(i: number): Promise<StageResult> {
    let p = this.#stages.get(i);
    if (p === undefined) {
      p = new StageRun(this, this.plan.stages[i]!).run();
      this.#stages.set(i, p);
    }
    return p;
  }

  nextStep(): number {
    return ++this.#steps;
  }

  #suffix = 0;
  /** A unique name part for this build's temp dirs. */
  nextStepSuffix(): string {
    return String(++this.#suffix);
  }

  #output: Set<number> | undefined;
  /** The target and the stages it is built FROM, transitively: their layers end up in the image. */
  get outputStages(): Set<number> {
    if (this.#output === undefined) {
      const out = new Set<number>();
      for (let i: number | undefined = this.plan.target; i !== undefined;) {
        out.add(i);
        const base: PlannedStage['base'] = this.plan.stages[i]!.base;
        i = base.kind === 'stage' ? base.index : undefined;
      }
      this.#output = out;
    }
    return this.#output;
  }

  get lease(): Lease {
    return this.#lease!;
  }

  image(name: string, platform: Platform): Promise<BaseImage> {
    const key = `${name}\0${formatPlatform(platform)}`;
    let p = this.#images.get(key);
    if (p === undefined) {
      p = resolveImage(this.o.store, name, platform, {
        pull: this.o.pull,
        ...(this.o.registry ? { registry: this.o.registry } : {}),
        onPull: (full) => this.o.events({ type: 'info', message: `pulling ${full} (${formatPlatform(platform)})` }),
        ...(this.o.admit ? { admit: this.o.admit } : {}),
      });
      this.#images.set(key, p);
    }
    return p;
  }

  /** The filesystem of an image state, read from its layer blobs (index cached per layer in the store). */
  tree(state: ImageState): Promise<LayerTree> {
    let p = this.#trees.get(state.key);
    if (p === undefined) {
      p = (async () => {
        const { LayerTree } = await import('./layer-tree.ts');
        const dir = path.join(this.tmp, `tree-${this.#trees.size}`);
        await mkdir(dir, { recursive: true });
        return LayerTree.open(this.o.store.layout, state.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
          state.layers.map((l) => l.diffID), {
            tmpDir: dir, indexCacheDir: path.join(this.o.store.root, CACHE_DIR, 'layer-index'),
            // Small files COPY --from reads stay in memory (bounded): no temp file created, read back and removed.
            memoryBytes: TREE_MEMORY_BYTES,
          });
      })();
      this.#trees.set(state.key, p);
    }
    return p;
  }

  /**
   * Walks the context and hashes what COPY/ADD will read from it (literal source words of the needed stages) in the
   * background, from the start: a stage's COPY usually waits for the RUN steps of the stages before it, and then
   * finds its checksum ready. Best effort: errors are left for the step itself to report.
   */
  async #prefetchContext(): Promise<void> {
    if (this.o.contextDir === undefined) return;
    const sources = new Set<string>();
    for (const i of this.plan.needed) {
      for (const ins of this.plan.stages[i]!.stage.instructions) {
        if ((ins.kind !== 'COPY' && ins.kind !== 'ADD') || flagValue(ins.flags, 'from') !== undefined) continue;
        const heredocs = new Set(ins.heredocs.map((h) => h.name));
        for (const src of ins.sources) if (!heredocs.has(src) && !src.includes('$') && !/^[a-z][a-z0-9+.-]*:\/\//i.test(src)) sources.add(src);
      }
    }
    if (sources.size === 0) return;
    try {
      const ctx = await this.context('');
      const cache = await this.checksums();
      for (const src of sources) {
        const sum = (async () => ctx.checksum(await ctx.match(src), cache))();
        this.#sums.set(src, sum);
        await sum.catch(() => {});
      }
    } catch {
      // The steps report it.
    }
  }

  /** Checksums of context sources (no --exclude) worked out ahead by #prefetchContext, by source word. */
  readonly #sums = new Map<string, Promise<string>>();

  /** The checksum of `matches`, the matches of source word `src`: the prefetched one when there is one. */
  async contextSum(src: string, exclude: string[], matches: SourceMatch[]): Promise<string> {
    const ahead = exclude.length === 0 ? this.#sums.get(src) : undefined;
    if (ahead !== undefined) {
      try {
        return await ahead;
      } catch {
        // Worked out again below, so that the step reports the error itself.
      }
    }
    return (await this.context('')).checksum(matches, await this.checksums());
  }

  context(where: string): Promise<BuildContext> {
    if (this.o.contextDir === undefined) {
      return Promise.reject(new HoistError('NO_CONTEXT', `${where}: there is no build context (the Dockerfile came from stdin with "-"); pass a context directory: hoist build -f - DIR`));
    }
    this.#context ??= (async () => {
      const { BuildContext } = await import('./context.ts');
      const { IgnoreMatcher, readIgnoreFile } = await import('./dockerignore.ts');
      const ignore = await readIgnoreFile(this.o.contextDir!, this.o.dockerfilePath);
      return BuildContext.open(this.o.contextDir!, new IgnoreMatcher(ignore.patterns));
    })();
    return this.#context;
  }

  checksums(): Promise<ChecksumCache> {
    this.#checksums ??= (async () => {
      const { ChecksumCache } = await import('./checksum-cache.ts');
      const id = createHash('sha256').update(path.resolve(this.o.contextDir ?? '-')).digest('hex');
      const dir = path.join(this.o.store.root, CACHE_DIR, 'checksums');
      await mkdir(dir, { recursive: true });
      return ChecksumCache.open(path.join(dir, `${id}.json`));
    })();
    return this.#checksums;
  }

  /** A step's `created`: the fixed build time when reproducible, else the cached one, else now. */
  createdFor(entry: CacheEntry | undefined): string {
    if (this.o.timestamp !== undefined) return new Date(this.o.timestamp * 1000).toISOString();
    return entry?.created ?? new Date().toISOString();
  }

  get mtimeClamp(): Date | undefined {
    return this.o.timestamp === undefined ? undefined : new Date(this.o.timestamp * 1000);
  }

  get indexCacheDir(): string {
    return path.join(this.o.store.root, CACHE_DIR, 'layer-index');
  }

  #readers: Set<number> | undefined;

  /**
   * Whether another needed stage reads stage `i`'s files: FROM it, COPY --from it, or RUN --mount from it. A --from
   * that names a stage only through a variable counts as reading every stage.
   */
  readByOthers(i: number): boolean {
    if (this.#readers === undefined) {
      const readers = new Set<number>();
      for (const n of this.plan.needed) {
        const ps = this.plan.stages[n]!;
        if (ps.base.kind === 'stage') readers.add(ps.base.index);
        for (const ins of ps.stage.instructions) {
          const froms: string[] = [];
          if (ins.kind === 'COPY' || ins.kind === 'ADD') {
            const f = flagValue(ins.flags, 'from');
            if (f !== undefined) froms.push(f);
          } else if (ins.kind === 'RUN') {
            for (const m of flagValues(ins.flags, 'mount')) {
              const f = /(?:^|,)from=([^,]*)/.exec(m)?.[1];
              if (f !== undefined) froms.push(f);
            }
          }
          for (const f of froms) {
            if (f.includes('$')) {
              for (let k = 0; k < this.plan.stages.length; k++) readers.add(k);
              continue;
            }
            const k = stageRef(this.df, f, ps.stage.index);
            if (k !== undefined) readers.add(k);
          }
        }
      }
      this.#readers = readers;
    }
    return this.#readers.has(i);
  }

  /** Snapshots being unpacked alongside a layer's writing, by the layer's diffID ('' when it made no layer). */
  #snapshots = new Map<Promise<unknown>, string>();

  /** Records such a snapshot: RUN steps on that layer and the end of the build wait for it. */
  snapshotting(diffID: string | undefined, p: Promise<unknown>): void {
    const settled = p.catch(() => {});
    this.#snapshots.set(settled, diffID ?? '');
    void settled.then(() => this.#snapshots.delete(settled));
  }

  /**
   * Waits for the snapshots of `diffIDs` being unpacked alongside (all of them when undefined). A failed one is
   * simply unpacked by the RUN itself.
   */
  async snapshotsReady(diffIDs?: string[]): Promise<void> {
    const want = diffIDs === undefined ? undefined : new Set(diffIDs);
    await Promise.all([...this.#snapshots].filter(([, d]) => want === undefined || want.has(d)).map(([p]) => p));
  }
}

/** One stage being built. */
class StageRun {
  readonly b: Builder;
  readonly ps: PlannedStage;
  state!: ImageState;
  /** ARGs declared in this stage: name → value (undefined: declared, no value). */
  readonly args = new Map<string, string | undefined>();
  /** CMD set in this stage (then ENTRYPOINT keeps it, as docker). */
  #cmdSet = false;
  #n = 0;
  readonly #of: number;
  /** The FROM image's ONBUILD triggers (inheritConfig leaves them out of the new config); they run first. */
  #baseTriggers: string[] | undefined;
  #base = { layers: 0, history: 0 };

  constructor(b: Builder, ps: PlannedStage) {
    this.b = b;
    this.ps = ps;
    this.#of = 1 + ps.stage.instructions.filter((i) => FS_STEPS.has(i.kind)).length;
  }

  get escape(): '\\' | '`' {
    return this.b.df.escape;
  }

  async run(): Promise<StageResult> {
    await this.#from();
    const triggers = this.#baseTriggers ?? containerConfig(this.state.config).OnBuild ?? [];
    delete containerConfig(this.state.config).OnBuild;
    if (triggers.length) {
      const { parseDockerfile } = await import('../dockerfile/parse.ts');
      for (const t of triggers) {
        const df = parseDockerfile(`FROM scratch\n${t}\n`, `${this.ps.stage.from.image} ONBUILD`);
        for (const ins of df.stages[0]!.instructions) await this.#instruction(ins);
      }
    }
    for (const ins of this.ps.stage.instructions) await this.#instruction(ins);
    return { state: this.state, label: this.ps.label, base: this.#base };
  }

  #platform(): Platform {
    if (this.ps.platform === undefined) return this.b.target;
    try {
      return parsePlatform(this.ps.platform);
    } catch (e) {
      throw new HoistError('BAD_PLATFORM', `${posString(this.ps.stage.from.pos)}: FROM --platform=${this.ps.platform}: ${(e as Error).message}`);
    }
  }

  async #from(): Promise<void> {
    const from = this.ps.stage.from;
    const id = this.#begin(from.original);
    const t0 = Date.now();
    const platform = this.#platform();
    const base = this.ps.base;
    if (base.kind === 'scratch') {
      this.state = { layers: [], config: scratchConfig(platform), key: stepKey('scratch', formatPlatform(platform)) };
    } else if (base.kind === 'stage') {
      const r = await this.b.stage(base.index);
      this.state = cloneState(r.state);
      this.#base = r.base;
    } else {
      const img = await this.b.image(base.name, platform);
      this.#baseTriggers = img.config.config?.OnBuild ?? undefined;
      this.#base = { layers: img.layers.length, history: img.config.history?.length ?? 0 };
      this.state = {
        layers: [...img.layers],
        config: inheritConfig(img.config, platform),
        key: stepKey('image', img.digest),
      };
    }
    this.b.o.events({ type: 'done', id, ms: Date.now() - t0 });
  }

  #begin(text: string): number {
    const id = this.b.nextStep();
    this.b.o.events({ type: 'step', id, stage: this.ps.label, n: ++this.#n, of: this.#of, text });
    return id;
  }

  /** The variables a word of this stage sees: declared ARGs with values, then ENV (which wins). */
  env(): Map<string, string> {
    const m = new Map<string, string>();
    for (const [k, v] of this.args) if (v !== undefined) m.set(k, v);
    for (const [k, v] of envMap(containerConfig(this.state.config).Env)) m.set(k, v);
    return m;
  }

  #expand(word: string, ins: Instruction): string {
    return expandAt(word, this.env(), ins.pos, this.escape);
  }

  async #instruction(ins: Instruction): Promise<void> {
    switch (ins.kind) {
      case 'FROM': throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: FROM inside ONBUILD is not allowed`);
      case 'RUN': return this.#run(ins);
      case 'COPY':
      case 'ADD': return this.#copy(ins);
      case 'WORKDIR': return this.#workdir(ins.value, ins);
      case 'ARG': return this.#arg(ins);
      default: return this.#meta(ins);
    }
  }

  #arg(ins: Extract<Instruction, { kind: 'ARG' }>): void {
    const o = this.b.o;
    const predefined = platformArgs(this.b.target, hostPlatform());
    for (const { name, default: def } of ins.args) {
      let v: string | undefined;
      if (o.buildArgs.has(name)) v = o.buildArgs.get(name);
      else if (def !== undefined) v = this.#expand(def, ins);
      else if (this.b.plan.globalArgs.has(name)) v = this.b.plan.globalArgs.get(name);
      else if (predefined.has(name)) v = predefined.get(name);
      this.args.set(name, v);
    }
    // The names only: a value reaches a step's key where the step uses it (RUN env, expanded COPY/ENV/… words), so a
    // changed --build-arg misses the cache at the first RUN after the ARG, not at the ARG (docker's and BuildKit's rule).
    this.state.key = stepKey(this.state.key, 'ARG', ins.args.map((a) => a.name));
  }

  /** Instructions that change only the config: applied, recorded in history as empty layers, keyed for the next steps. */
  async #meta(ins: Exclude<Instruction, { kind: 'FROM' | 'RUN' | 'COPY' | 'ADD' | 'WORKDIR' | 'ARG' }>): Promise<void> {
    const c = this.state.config;
    const cc = containerConfig(c);
    const shell = cc.Shell ?? DEFAULT_SHELL;
    let describe: unknown = ins.original;
    // BuildKit's history shows ENV, LABEL and USER with their words expanded (`ENV K=v K2=v2`); the rest as written.
    let history = ins.original;
    switch (ins.kind) {
      case 'ENV': {
        const env = this.env();
        let list = [...(cc.Env ?? [])];
        const pairs = ins.pairs.map((p) => [expandAt(p.key, env, ins.pos, this.escape), expandAt(p.value, env, ins.pos, this.escape)] as const);
        for (const [k, v] of pairs) list = setEnv(list, k, v);
        cc.Env = list;
        describe = pairs;
        history = `ENV ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
        break;
      }
      case 'LABEL': {
        const env = this.env();
        const labels = { ...(cc.Labels ?? {}) };
        const pairs = ins.pairs.map((p) => [expandAt(p.key, env, ins.pos, this.escape), expandAt(p.value, env, ins.pos, this.escape)] as const);
        for (const [k, v] of pairs) labels[k] = v;
        cc.Labels = labels;
        describe = labels;
        history = `LABEL ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
        break;
      }
      case 'MAINTAINER':
        c.author = this.#expand(ins.value, ins);
        break;
      case 'USER':
        cc.User = this.#expand(ins.value, ins);
        describe = cc.User;
        history = `USER ${cc.User}`;
        break;
      case 'STOPSIGNAL':
        cc.StopSignal = this.#expand(ins.value, ins);
        break;
      case 'EXPOSE': {
        const ports = { ...(cc.ExposedPorts ?? {}) };
        for (const w of ins.words) for (const word of expandWords(w, this.env(), { escape: this.escape }).words) for (const p of exposedPorts(word, ins)) ports[p] = {};
        cc.ExposedPorts = ports;
        describe = Object.keys(ports);
        break;
      }
      case 'VOLUME': {
        const vols = { ...(cc.Volumes ?? {}) };
        for (const w of ins.words) {
          const v = this.#expand(w, ins);
          if (v.trim() === '') throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: VOLUME specified can not be an empty string`);
          vols[v] = {};
        }
        cc.Volumes = vols;
        describe = Object.keys(vols);
        break;
      }
      case 'SHELL':
        cc.Shell = [...ins.words];
        break;
      case 'CMD':
        cc.Cmd = ins.command.kind === 'exec' ? [...ins.command.args] : [...shell, ins.command.text];
        this.#cmdSet = true;
        describe = cc.Cmd;
        break;
      case 'ENTRYPOINT':
        cc.Entrypoint = ins.command.kind === 'exec' ? [...ins.command.args] : [...shell, ins.command.text];
        // docker: a new ENTRYPOINT drops the CMD inherited from the base (not one set earlier in this stage).
        if (!this.#cmdSet) cc.Cmd = null;
        describe = cc.Entrypoint;
        break;
      case 'HEALTHCHECK':
        cc.Healthcheck = healthcheck(ins, shell);
        describe = cc.Healthcheck;
        break;
      case 'ONBUILD':
        cc.OnBuild = [...(cc.OnBuild ?? []), ins.trigger];
        break;
    }
    this.state.key = stepKey(this.state.key, ins.kind, describe);
    const entry = await this.b.cache.get(this.state.key);
    const created = this.b.createdFor(entry);
    if (!entry) await this.b.cache.put(this.state.key, { created });
    addHistory(c, { created, created_by: history, comment: 'buildkit.dockerfile.v0', empty_layer: true });
  }

  async #workdir(raw: string, ins: Instruction): Promise<void> {
    const cc = containerConfig(this.state.config);
    const v = this.#expand(raw, ins);
    const dir = path.posix.resolve(cc.WorkingDir || '/', v);
    cc.WorkingDir = dir;
    const id = this.#begin(ins.original);
    const t0 = Date.now();
    const key = stepKey(this.state.key, 'WORKDIR', dir, cc.User ?? '', this.b.o.compression, this.b.o.timestamp ?? null);
    await this.#layerStep(id, key, ins, async () => {
      const tree = await this.b.tree(this.state);
      if (await tree.isDir(dir.slice(1))) return undefined;
      const { copyLayer } = await import('./copy-layer.ts');
      const now = this.b.mtimeClamp?.getTime() ?? Date.now();
      // BuildKit makes the directories as the USER in force (mkdir WithUser); a name it cannot find stays root.
      let owner: { uid: number; gid: number } | undefined;
      if (cc.User) {
        const { resolveChown } = await import('./chown.ts');
        const passwd = (await tree.readFile('etc/passwd'))?.toString('utf8');
        const group = (await tree.readFile('etc/group'))?.toString('utf8');
        try {
          owner = resolveChown(cc.User, { ...(passwd !== undefined ? { passwd } : {}), ...(group !== undefined ? { group } : {}) });
        } catch {
          owner = undefined;
        }
      }
      const match: SourceMatch = { rel: '', entries: [{ rel: '', type: 'directory', mode: 0o755, uid: owner?.uid ?? 0, gid: owner?.gid ?? 0, size: 0, mtimeMs: now }] };
      return copyLayer([[match]], {
        dest: `${dir}/`, sourceCount: 1, lower: (abs: string) => tree.stat(abs.replace(/^\/+/, '')), ...(owner ? { chown: owner } : {}),
        ...(this.b.mtimeClamp ? { mtimeClamp: this.b.mtimeClamp } : {}),
      });
    }, `WORKDIR ${dir}`); // BuildKit's history names the absolute directory
    this.b.o.events({ type: 'done', id, ms: Date.now() - t0 });
  }

  /**
   * A step that may add a layer: from the cache when its key is there (and its blob still is), else `make` gives
   * the layer tar (undefined or an empty tar: no layer) which is stored and recorded.
   */
  /**
   * `make` gives the layer tar, or the tar and a promise that settles when its producer is done (a RUN step: the tar
   * is compressed and stored while the command runs, in one pass, and kept only if the command succeeded; a failed
   * step's blob is left unreferenced, for prune).
   */
  /**
   * Layers that can never be part of the image this build writes (stages the target neither is nor is FROM) are
   * stored as plain tars: only builds read them back, and compressing them cost more time than the disk they save
   * (BuildKit does not compress such layers at all until one is exported).
   */
  #uncompressed(): boolean {
    return !this.b.outputStages.has(this.ps.stage.index);
  }

  async #layerStep(id: number, stepKeyIn: string, ins: Instruction, make: () => Promise<Readable | MadeLayer | undefined>, history?: string): Promise<void> {
    const b = this.b;
    // An uncompressed layer is another blob, so that is part of the key: a cached layer is always the kind wanted.
    const plain = this.#uncompressed();
    const key = plain ? stepKey(stepKeyIn, 'uncompressed') : stepKeyIn;
    let entry = await b.cache.get(key);
    if (entry?.layer && !(await b.lease.hasBlob(entry.layer.digest))) entry = undefined;
    let layer: BuiltLayer | undefined;
    if (entry) {
      b.o.events({ type: 'cached', id });
      layer = entry.layer;
    } else {
      const made = await make();
      if (made !== undefined) {
        const m: MadeLayer = 'tar' in made ? made : { tar: made };
        const { done = Promise.resolve(), after } = m;
        let tar = m.tar;
        // A later RUN of this stage will need the layer unpacked: unpack it now, as it is written (see snapshotWriter).
        let snapshot: Promise<string> | undefined;
        if (m.snapshot && this.#runFollows(ins)) {
          const { snapshotWriter } = await import('../runtime/step.ts');
          const { teeTo } = await import('./tee.ts');
          const w = snapshotWriter({ storeRoot: b.o.store.root, debug: b.o.debug });
          tar = teeTo(tar, w.input);
          snapshot = w.done;
        }
        // A later step will read this stage's files (the next COPY's lower tree, another stage's COPY --from): the
        // layer's index is made from the tar as it goes by, instead of reading the stored blob back for it.
        let indexing: Promise<import('./layer-tree.ts').IndexEntry[]> | undefined;
        if (this.#treeWanted(ins) && m.index !== undefined) {
          const written = m.index;
          indexing = done.then(() => written);
        } else if (this.#treeWanted(ins)) {
          const { indexTar } = await import('./layer-tree.ts');
          const { teeTo } = await import('./tee.ts');
          const { PassThrough } = await import('node:stream');
          const side = new PassThrough();
          tar = teeTo(tar, side);
          indexing = indexTar(side, `layer of ${ins.original}`);
          indexing.catch(() => {});
        }
        try {
          const { storeLayer } = await import('./layer-blob.ts');
          const storing = storeLayer(b.o.store.layout, tar, { compression: plain ? 'none' : b.o.compression, lease: b.lease });
          // Whichever fails first is the error to report; the other is awaited so nothing is left running.
          const [s1, s2] = await Promise.allSettled([storing, done]);
          if (s2.status === 'rejected') throw s2.reason;
          if (s1.status === 'rejected') throw s1.reason;
          const stored = s1.value;
          if (stored.entries > 0) {
            layer = { digest: stored.descriptor.digest, size: stored.descriptor.size, mediaType: stored.descriptor.mediaType, diffID: stored.diffID };
            if (indexing !== undefined) {
              const { saveIndex } = await import('./layer-tree.ts');
              const diffID = layer.diffID;
              await indexing.then((entries) => saveIndex(b.indexCacheDir, diffID, entries)).catch(() => {});
            }
          }
        } finally {
          await after?.(layer?.diffID);
          if (snapshot !== undefined) b.snapshotting(layer?.diffID, snapshot);
        }
      }
      entry = { ...(layer ? { layer } : {}), created: b.createdFor(undefined) };
      await b.cache.put(key, entry);
    }
    if (layer) addLayer(this.state, layer);
    addHistory(this.state.config, {
      created: b.createdFor(entry), created_by: history ?? ins.original, comment: 'buildkit.dockerfile.v0', ...(layer ? {} : { empty_layer: true }),
    });
    this.state.key = key;
  }

  /**
   * Whether something after `ins` will read this stage's filesystem through a LayerTree: a later COPY, ADD or
   * WORKDIR of the stage (its lower tree), or another needed stage built on or copying from this one.
   */
  #treeWanted(ins: Instruction): boolean {
    const list = this.ps.stage.instructions;
    if (list.slice(list.indexOf(ins) + 1).some((i) => i.kind === 'COPY' || i.kind === 'ADD' || i.kind === 'WORKDIR')) return true;
    return this.b.readByOthers(this.ps.stage.index);
  }

  /** Whether a RUN comes after `ins` in this stage. */
  #runFollows(ins: Instruction): boolean {
    const list = this.ps.stage.instructions;
    return list.slice(list.indexOf(ins) + 1).some((i) => i.kind === 'RUN');
  }

  async #run(ins: RunInstruction): Promise<void> {
    const b = this.b;
    const cc = containerConfig(this.state.config);
    const shell = cc.Shell ?? DEFAULT_SHELL;
    const env = this.env();
    let args: string[];
    if (ins.command.kind === 'exec') {
      if (ins.command.args.length === 0) throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: RUN [] has no command`);
      args = [...ins.command.args];
    } else {
      args = [...shell, runScript(ins)];
    }
    const networkFlag = flagValue(ins.flags, 'network');
    const network = networkFlag === undefined || networkFlag === 'default' ? (b.o.network ?? 'host') : networkFlag;
    if (network !== 'host' && network !== 'none') throw new HoistError('BAD_FLAG', `${posString(ins.pos)}: RUN --network=${networkFlag}: use default, none or host`);
    if (flagValue(ins.flags, 'security') === 'insecure') throw new HoistError('UNSUPPORTED', `${posString(ins.pos)}: RUN --security=insecure is not supported in a rootless build`);
    const mounts = flagValues(ins.flags, 'mount').map((m) => parseRunMount(expandAt(m, env, ins.pos, this.escape), posString(ins.pos)));

    // What the process sees: the config's Env, plus the stage's ARGs ENV doesn't override, plus proxy build args.
    const cfgEnv = envMap(cc.Env);
    const argEnv: string[] = [];
    for (const [k, v] of this.args) if (v !== undefined && !cfgEnv.has(k)) argEnv.push(`${k}=${v}`);
    const proxies: string[] = [];
    for (const k of PROXY_ARGS) if (b.o.buildArgs.has(k) && !this.args.has(k)) proxies.push(`${k}=${b.o.buildArgs.get(k)}`);
    const secretEnv: string[] = [];
    const runEnv = [...(cc.Env ?? []), ...argEnv];

    const mountKeys: unknown[] = [];
    const runtimeMounts: Mount[] = [];
    for (const m of mounts) mountKeys.push(await this.#mount(m, ins, runtimeMounts, secretEnv));

    const prefix = argEnv.length ? `|${argEnv.length} ${argEnv.join(' ')} ` : '';
    const created_by = `RUN ${prefix}${args.join(' ')} # buildkit`;
    // Proxy values and secrets are left out of the key and the history, as BuildKit does.
    const key = stepKey(this.state.key, 'RUN', args, runEnv, mountKeys, network, cc.User ?? '', cc.WorkingDir ?? '', b.o.compression, b.o.timestamp ?? null);
    const id = this.#begin(ins.original);
    const t0 = Date.now();
    await this.#layerStep(id, key, ins, async () => {
      const { runStep } = await import('../runtime/step.ts');
      // Layers being unpacked alongside their writing (snapshotWriter) are waited for, not unpacked twice.
      await b.snapshotsReady(this.state.layers.map((l) => l.diffID));
      const step = runStep({
        storeRoot: b.o.store.root,
        layers: this.state.layers.map((l) => ({ diffID: l.diffID, digest: l.digest, size: l.size })),
        args,
        env: [...runEnv, ...proxies, ...secretEnv],
        cwd: cc.WorkingDir || '/',
        ...(cc.User ? { user: cc.User } : {}),
        mounts: runtimeMounts,
        network,
        ...(b.o.runtime ? { runtime: b.o.runtime } : {}),
        debug: b.o.debug,
        ...(b.mtimeClamp ? { mtimeClamp: b.mtimeClamp } : {}),
        warn: (message) => b.o.events({ type: 'warning', message }),
        // The upper dir becomes the new layer's snapshot (after()): not deleted now, not unpacked again later.
        keepUpper: true,
      });
      step.stdout.on('data', (chunk: Buffer) => b.o.events({ type: 'output', id, chunk, stream: 1 }));
      step.stderr.on('data', (chunk: Buffer) => b.o.events({ type: 'output', id, chunk, stream: 2 }));
      const done = step.exit.then((code) => {
        if (code !== 0) throw new HoistError('RUN_FAILED', `${posString(ins.pos)} [${this.ps.label}] ${ins.original}: the command exited with status ${code}`);
      });
      return { tar: step.layer, done, after: (diffID: string | undefined) => step.adopt(diffID) };
    }, created_by);
    b.o.events({ type: 'done', id, ms: Date.now() - t0 });
  }

  /** Sets up one RUN --mount; gives what of it belongs in the step's cache key. */
  async #mount(m: RunMount, ins: RunInstruction, out: Mount[], secretEnv: string[]): Promise<unknown> {
    const b = this.b;
    const where = posString(ins.pos);
    const target = m.type === 'secret' && m.target === '' ? '' : path.posix.resolve(containerConfig(this.state.config).WorkingDir || '/', m.target);
    switch (m.type) {
      case 'tmpfs':
        out.push({ type: 'tmpfs', destination: target, options: ['nosuid', 'nodev', ...(m.size !== undefined ? [`size=${m.size}`] : [])] });
        return ['tmpfs', target];
      case 'secret': {
        const src = b.o.secrets.get(m.id);
        if (src === undefined) {
          if (m.required) throw new HoistError('NO_SECRET', `${where}: secret "${m.id}" is required; pass it with --secret id=${m.id},src=FILE`);
          return ['secret', m.id, 'absent'];
        }
        let file = src.file;
        let value: string | undefined;
        if (src.env !== undefined) {
          value = process.env[src.env] ?? '';
          file = path.join(b.tmp, 'secrets', m.id);
          await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
          await writeFile(file, value, { mode: 0o600 });
        }
        if (m.env !== undefined) {
          if (value === undefined) {
            const { readFile } = await import('node:fs/promises');
            value = await readFile(file!, 'utf8');
          }
          secretEnv.push(`${m.env}=${value}`);
        }
        if (target !== '') out.push({ type: 'bind', source: file!, destination: target, readonly: true });
        // The secret's content is never part of the key: a changed secret does not re-run the step (as BuildKit).
        return ['secret', m.id, target, m.env ?? null];
      }
      case 'cache': {
        if (m.from !== undefined) b.o.events({ type: 'warning', message: `${where}: --mount type=cache,from= is not supported yet; the cache starts empty` });
        const dir = path.join(b.o.store.root, CACHE_DIR, 'mounts', createHash('sha256').update(m.id).digest('hex'));
        await mkdir(dir, { recursive: true });
        out.push({ type: 'bind', source: dir, destination: target, readonly: m.readonly });
        return ['cache', m.id, target];
      }
      case 'bind': {
        const source = m.source.replace(/^\/+/, '') || '.';
        if (m.from !== undefined) {
          const v = m.from;
          const stageIndex = stageRef(b.df, v, this.ps.stage.index);
          const state = stageIndex !== undefined ? (await b.stage(stageIndex)).state : await this.#imageState(v);
          const tree = await b.tree(state);
          const matches = await tree.match(source === '.' ? '.' : source);
          const dir = path.join(b.tmp, `bind-${b.nextStepSuffix()}`);
          const { materialize } = await import('./materialize.ts');
          for (const mt of matches) await materialize(mt.entries, mt.rel, dir);
          out.push({ type: 'bind', source: dir, destination: target, readonly: !m.readwrite });
          return ['bind', state.key, source, target, m.readwrite];
        }
        const ctx = await b.context(where);
        const matches = await ctx.match(source);
        const sum = await ctx.checksum(matches, await b.checksums());
        let dir = path.join(b.o.contextDir!, source);
        if (m.readwrite) {
          // Writes to a rw bind are thrown away (BuildKit): never into the user's context.
          const copy = path.join(b.tmp, `bind-${b.nextStepSuffix()}`);
          const { materialize } = await import('./materialize.ts');
          for (const mt of matches) await materialize(mt.entries, mt.rel, copy);
          dir = copy;
        }
        out.push({ type: 'bind', source: dir, destination: target, readonly: !m.readwrite });
        return ['bind', 'context', source, sum, target, m.readwrite];
      }
    }
  }

  async #imageState(name: string): Promise<ImageState> {
    const img = await this.b.image(name, this.#platform());
    return { layers: [...img.layers], config: img.config, key: stepKey('image', img.digest) };
  }

  async #copy(ins: CopyInstruction): Promise<void> {
    const b = this.b;
    const where = posString(ins.pos);
    const env = this.env();
    const x = (w: string): string => expandAt(w, env, ins.pos, this.escape);
    const cc = containerConfig(this.state.config);
    const isAdd = ins.kind === 'ADD';
    const fromRaw = flagValue(ins.flags, 'from');
    const from = fromRaw === undefined ? undefined : x(fromRaw);
    const chown = flagValue(ins.flags, 'chown');
    const chmod = flagValue(ins.flags, 'chmod');
    const exclude = flagValues(ins.flags, 'exclude').map(x);
    const parents = flagBool(ins.flags, 'parents');
    const link = flagBool(ins.flags, 'link');
    const checksum = flagValue(ins.flags, 'checksum');
    const destRaw = x(ins.dest);
    if (destRaw === '') throw new HoistError('DOCKERFILE_SYNTAX', `${where}: ${ins.kind} has an empty destination`);
    // A trailing '/' (and `.`, `..`) means a directory; resolve() would drop that.
    const destDir = destRaw.endsWith('/') || destRaw === '.' || destRaw === '..' || destRaw.endsWith('/.') || destRaw.endsWith('/..');
    const destAbs = path.posix.resolve(cc.WorkingDir || '/', destRaw);
    const dest = destDir && destAbs !== '/' ? `${destAbs}/` : destAbs;
    const heredocNames = new Set(ins.heredocs.map((h) => h.name));
    const sources = ins.sources.map((s) => (heredocNames.has(s) ? s : x(s)));

    // Where each source comes from, and what identifies its content for the cache key.
    // --from: the key needs only the source state's key, so its tree is opened and matched (which extracts the
    // matched files' bytes) only when the step is not cached: a no-op rebuild reads no layer blob.
    let tree: (() => Promise<SourceTree>) | undefined;
    let treeKey: unknown;
    const deferred: Array<() => Promise<void>> = [];
    if (from !== undefined) {
      if (isAdd) throw new HoistError('DOCKERFILE_SYNTAX', `${where}: ADD has no --from; use COPY --from`);
      const stageIndex = stageRef(b.df, from, this.ps.stage.index);
      const state = stageIndex !== undefined ? (await b.stage(stageIndex)).state : await this.#imageState(from);
      treeKey = ['tree', state.key];
      tree = () => b.tree(state);
    }
    const perSource: SourceMatch[][] = [];
    // Per source word, what --parents reads in-between directories from (none for heredocs and URLs).
    const statOf: (SourceTree | undefined)[] = [];
    const sums: unknown[] = [];
    const now = b.mtimeClamp?.getTime() ?? Date.now();
    for (const s of sources) {
      const h = ins.heredocs.find((d) => d.name === s);
      if (h) {
        const content = Buffer.from(h.expand ? x(h.content) : h.content);
        perSource.push([{ rel: h.name, entries: [{ rel: h.name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: content.length, mtimeMs: now, content }] }]);
        statOf.push(undefined);
        sums.push(['heredoc', h.name, createHash('sha256').update(content).digest('hex')]);
      } else if (isAdd && (await import('./add-url.ts')).isHttpUrl(s)) {
        const { fetchUrl } = await import('./add-url.ts');
        const dir = path.join(b.tmp, `url-${b.nextStepSuffix()}`);
        await mkdir(dir, { recursive: true });
        const got = await fetchUrl(s, { ...(checksum !== undefined ? { checksum: x(checksum) } : {}), dir }).catch((e: unknown) => {
          // Say where in the Dockerfile (a digest mismatch, an HTTP error): the fetch's own message names only the URL.
          throw e instanceof HoistError ? new HoistError(e.code, `${where}: ${e.message}`, { cause: e, exitCode: e.exitCode }) : e;
        });
        perSource.push([{ rel: got.entry.rel, entries: [got.entry] }]);
        statOf.push(undefined);
        sums.push(['url', s, got.digest]);
      } else if (tree !== undefined) {
        const at = perSource.length;
        const open = tree;
        perSource.push([]);
        statOf.push(undefined);
        deferred.push(async () => {
          const t = await open();
          perSource[at] = await t.match(s, exclude);
          statOf[at] = t;
        });
        sums.push([s]);
      } else {
        if (isAdd && (await import('./add-url.ts')).isGitUrl(s)) throw new HoistError('UNSUPPORTED', `${where}: ADD of a git repository is not supported by hoist; clone it into the context and COPY it`);
        const ctx = await b.context(where);
        const matches = await ctx.match(s, exclude);
        perSource.push(isAdd ? await this.#addArchives(matches) : matches);
        statOf.push(ctx);
        sums.push([s, await b.contextSum(s, exclude, matches)]);
      }
    }
    const key = stepKey(this.state.key, ins.kind, {
      dest, chown: chown === undefined ? null : x(chown), chmod: chmod === undefined ? null : x(chmod), exclude, parents, treeKey: treeKey ?? null, sums,
      link, compression: b.o.compression, clamp: b.o.timestamp ?? null,
    });
    const id = this.#begin(ins.original);
    const t0 = Date.now();
    await this.#layerStep(id, key, ins, async () => {
      for (const d of deferred) await d();
      const lowerTree = await b.tree(this.state);
      let owner: { uid: number; gid: number } | undefined;
      if (chown !== undefined) {
        const { resolveChown } = await import('./chown.ts');
        const passwd = (await lowerTree.readFile('etc/passwd'))?.toString('utf8');
        const group = (await lowerTree.readFile('etc/group'))?.toString('utf8');
        owner = resolveChown(x(chown), { ...(passwd !== undefined ? { passwd } : {}), ...(group !== undefined ? { group } : {}) });
      }
      const { copyLayer, splitParentsPivot } = await import('./copy-layer.ts');
      // --parents: paths are kept below each word's `/./` pivot; in-between directories take the source's metadata.
      const parentsOpt = { pivots: sources.map((s) => splitParentsPivot(s).pivot), stat: async (w: number, rel: string) => statOf[w]?.stat(rel) };
      const entries = perSource.reduce((n, ms) => n + ms.reduce((k, m) => k + m.entries.length, 0), 0);
      const { writtenIndexEntry } = await import('./layer-tree.ts');
      const index: import('./layer-tree.ts').IndexEntry[] = [];
      let written = 0;
      const tar = copyLayer(perSource, {
        onEntry: (h, xattrs) => {
          const e = writtenIndexEntry(h as import('./layer-tree.ts').TarHeader, xattrs, written++, `layer of ${ins.original}`);
          if (e !== undefined) index.push(e);
        },
        dest, sourceCount: sources.length,
        ...(owner ? { chown: owner } : {}), ...(chmod !== undefined ? { chmod: x(chmod) } : {}), ...(parents ? { parents: parentsOpt } : {}),
        // --link: the layer must not depend on what is below it (BuildKit rebases it), so nothing below is looked at.
        lower: link ? async () => undefined : (abs: string) => lowerTree.stat(abs.replace(/^\/+/, '')),
        // Files from another stage or image keep their owners; context files are root's (BuildKit).
        keepOwner: from !== undefined,
        instruction: ins.kind,
        ...(b.mtimeClamp ? { mtimeClamp: b.mtimeClamp, now: b.mtimeClamp } : {}),
      });
      return { tar, index, snapshot: entries >= SNAPSHOT_ALONG_ENTRIES };
    }, `${ins.original} # buildkit`);
    b.o.events({ type: 'done', id, ms: Date.now() - t0 });
  }

  /** ADD: local tar archives among the matches are extracted (their entries replace the archive file). */
  async #addArchives(matches: SourceMatch[]): Promise<SourceMatch[]> {
    const { expandArchives } = await import('./add-archive.ts');
    return expandArchives(matches, path.join(this.b.tmp, `add-${this.b.nextStepSuffix()}`));
  }
}

/** The shell-form RUN text, with heredoc bodies after it as the shell expects; a RUN that is only a heredoc runs its body. */
function runScript(ins: RunInstruction): string {
  const text = ins.command.kind === 'shell' ? ins.command.text : '';
  if (ins.heredocs.length === 0) return text;
  if (ins.heredocs.length === 1 && /^<<-?(["']?)[A-Za-z0-9_]+\1\s*$/.test(text.trim())) return ins.heredocs[0]!.content;
  return `${text}\n${ins.heredocs.map((h) => `${h.content}${h.name}\n`).join('')}`;
}

/** `80`, `80/udp`, `8000-8002/tcp` → docker's `80/tcp` keys. */
function exposedPorts(word: string, ins: Instruction): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(word);
  if (!m) throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: EXPOSE ${word}: not a port; use PORT, PORT/tcp, PORT/udp or FROM-TO/proto`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : Number(m[2]);
  if (hi < lo || hi > 65535) throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: EXPOSE ${word}: bad port range`);
  const proto = (m[3] ?? 'tcp').toLowerCase();
  const out: string[] = [];
  for (let p = lo; p <= hi; p++) out.push(`${p}/${proto}`);
  return out;
}

function duration(v: string | undefined, flag: string, ins: Instruction): number | undefined {
  if (v === undefined) return undefined;
  const ns = parseGoDuration(v);
  if (ns === undefined) throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: HEALTHCHECK --${flag}=${v}: not a duration; use e.g. 30s, 1m30s`);
  return ns;
}

function healthcheck(ins: Extract<Instruction, { kind: 'HEALTHCHECK' }>, shell: string[]): NonNullable<ImageConfig['config']>['Healthcheck'] {
  if (ins.command === undefined) return { Test: ['NONE'] };
  void shell;
  const test = ins.command.kind === 'exec' ? ['CMD', ...ins.command.args] : ['CMD-SHELL', ins.command.text];
  const h: Record<string, unknown> = { Test: test };
  const interval = duration(flagValue(ins.flags, 'interval'), 'interval', ins);
  const timeout = duration(flagValue(ins.flags, 'timeout'), 'timeout', ins);
  const startPeriod = duration(flagValue(ins.flags, 'start-period'), 'start-period', ins);
  const startInterval = duration(flagValue(ins.flags, 'start-interval'), 'start-interval', ins);
  const retries = flagValue(ins.flags, 'retries');
  if (interval !== undefined) h['Interval'] = interval;
  if (timeout !== undefined) h['Timeout'] = timeout;
  if (startPeriod !== undefined) h['StartPeriod'] = startPeriod;
  if (startInterval !== undefined) h['StartInterval'] = startInterval;
  if (retries !== undefined) {
    if (!/^\d+$/.test(retries)) throw new HoistError('DOCKERFILE_SYNTAX', `${posString(ins.pos)}: HEALTHCHECK --retries=${retries}: not a whole number`);
    h['Retries'] = Number(retries);
  }
  return h;
}
