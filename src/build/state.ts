/**
 * The image a stage is building, step by step: its layers, its config (what `docker inspect` shows) and its history.
 * Pure: instructions that change only metadata are applied here; the builder adds layers.
 */
import { DEFAULT_PATH } from '../runtime/run-config.ts';
import type { CachedLayer } from '../store/build-cache.ts';
import type { ContainerConfig, HistoryEntry, ImageConfig, Platform } from '../oci/types.ts';

/** A layer of the image being built (the cache stores the same shape). */
export type BuiltLayer = CachedLayer;

export interface ImageState {
  layers: BuiltLayer[];
  config: ImageConfig;
  /**
   * The cache key of everything so far (base image, every instruction with what it saw, every input's checksum):
   * a step whose key is in the cache is not run again.
   */
  key: string;
}

export const DEFAULT_SHELL = ['/bin/sh', '-c'];

export function scratchConfig(platform: Platform): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    // What docker puts in an image built FROM scratch: a PATH (the runtime's default one), since nothing else would.
    config: { Env: [`PATH=${DEFAULT_PATH}`] },
    rootfs: { type: 'layers', diff_ids: [] },
    history: [],
  };
}

/** A deep copy: states are shared between stages (FROM another stage) and cache lookups, so never mutate one in place. */
export function cloneState(s: ImageState): ImageState {
  return { layers: [...s.layers], config: structuredClone(s.config), key: s.key };
}

export function containerConfig(c: ImageConfig): ContainerConfig {
  c.config ??= {};
  return c.config;
}

/** `NAME=value` lookups over an Env list (last wins, as the runtime sees it). */
export function envMap(env: readonly string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of env ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 0) m.set(kv, '');
    else m.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return m;
}

/** Sets NAME in an Env list, in place of an existing entry (docker keeps the position) or at the end. */
export function setEnv(env: string[], name: string, value: string): string[] {
  const out = [...env];
  const i = out.findIndex((kv) => kv === name || kv.startsWith(`${name}=`));
  if (i >= 0) out[i] = `${name}=${value}`;
  else out.push(`${name}=${value}`);
  return out;
}

export function addHistory(c: ImageConfig, h: HistoryEntry): void {
  (c.history ??= []).push(h);
}

export function addLayer(s: ImageState, layer: BuiltLayer): void {
  s.layers.push(layer);
  s.config.rootfs.diff_ids.push(layer.diffID);
}

/** The config of a new image FROM `base`: docker keeps everything but the ONBUILD triggers (run once, by this build). */
export function inheritConfig(base: ImageConfig, platform: Platform): ImageConfig {
  const c = structuredClone(base);
  const cc = containerConfig(c);
  delete cc.OnBuild;
  // Docker-only leftovers of the base's own build describe that build, not this one.
  delete c['container'];
  delete c['container_config'];
  delete c['docker_version'];
  c.architecture ||= platform.architecture;
  c.os ||= platform.os;
  c.history ??= [];
  c.rootfs = { type: 'layers', diff_ids: [...(base.rootfs?.diff_ids ?? [])] };
  return c;
}

/**
 * The config's keys in the order docker writes them, so that two builds of the same inputs give byte-identical
 * configs whatever order the steps touched them in.
 */
export function orderedConfig(c: ImageConfig): ImageConfig {
  const order = ['created', 'author', 'architecture', 'os', 'os.version', 'os.features', 'variant', 'config', 'rootfs', 'history'];
  const out: Record<string, unknown> = {};
  for (const k of order) if (c[k] !== undefined) out[k] = c[k];
  for (const k of Object.keys(c).sort()) if (!(k in out) && c[k] !== undefined) out[k] = c[k];
  if (c.config) {
    const cc: Record<string, unknown> = {};
    const corder = ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Healthcheck', 'ArgsEscaped', 'Volumes', 'WorkingDir', 'Labels', 'OnBuild', 'StopSignal', 'Shell'];
    for (const k of corder) if (c.config[k] !== undefined) cc[k] = c.config[k];
    for (const k of Object.keys(c.config).sort()) if (!(k in cc) && c.config[k] !== undefined) cc[k] = c.config[k];
    out['config'] = cc;
  }
  return out as ImageConfig;
}
