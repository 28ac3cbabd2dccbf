/**
 * `inspect` output in skopeo's shapes, so scripts written against skopeo keep working:
 * - the summary object (skopeo's inspect.Output: Name, Digest, RepoTags, Created, … LayersData, Env);
 * - `--config`: the config as the OCI image-spec Go struct marshals it (skopeo converts Docker configs to OCI);
 * - both printed like Go's json.MarshalIndent with 4 spaces and HTML-safe escaping.
 */
import type { Descriptor, ImageConfig, ImageManifest } from '../oci/types.ts';

export interface InspectLayer {
  MIMEType: string;
  Digest: string;
  Size: number;
  Annotations: Record<string, string> | null;
}

export interface InspectOutput {
  Name?: string;
  Digest: string;
  RepoTags: string[];
  Created: string | null;
  DockerVersion: string;
  Labels: Record<string, string> | null;
  Architecture: string;
  Variant?: string;
  Os: string;
  Layers: string[];
  LayersData: InspectLayer[];
  Env: string[] | null;
}

export interface InspectInput {
  /** Repository name for registry images (skopeo omits Name for layouts and archives). */
  name?: string;
  /** Digest of the top-level manifest the reference names (the index's digest for multi-platform images). */
  digest: string;
  repoTags: string[];
  manifest: ImageManifest;
  config: ImageConfig;
}

export function inspectOutput(i: InspectInput): InspectOutput {
  const out: InspectOutput = {
    Digest: i.digest,
    RepoTags: i.repoTags,
    Created: i.config.created ?? null,
    DockerVersion: typeof i.config['docker_version'] === 'string' ? i.config['docker_version'] : '',
    Labels: i.config.config?.Labels ?? null,
    Architecture: i.config.architecture,
    Os: i.config.os,
    Layers: i.manifest.layers.map((l) => l.digest),
    LayersData: i.manifest.layers.map(layerData),
    Env: i.config.config?.Env ?? null,
  };
  // Keep skopeo's key order: Name first, Variant between Architecture and Os, both only when set.
  const ordered: InspectOutput = i.name ? { Name: i.name, ...out } : out;
  if (i.config.variant) {
    const { Os, Layers, LayersData, Env, ...head } = ordered;
    return { ...head, Variant: i.config.variant, Os, Layers, LayersData, Env };
  }
  return ordered;
}

function layerData(l: Descriptor): InspectLayer {
  return { MIMEType: l.mediaType, Digest: l.digest, Size: l.size, Annotations: l.annotations ?? null };
}

/** The config as image-spec's v1.Image marshals it (field order, omitempty), which is what `skopeo inspect --config` prints. */
export function ociConfigView(c: ImageConfig): Record<string, unknown> {
  const cc = c.config;
  const view: Record<string, unknown> = {};
  set(view, 'created', c.created);
  set(view, 'author', c.author);
  view['architecture'] = c.architecture;
  set(view, 'variant', c.variant);
  view['os'] = c.os;
  set(view, 'os.version', c['os.version']);
  setList(view, 'os.features', c['os.features']);
  if (cc) {
    const v: Record<string, unknown> = {};
    set(v, 'User', cc.User);
    setMap(v, 'ExposedPorts', cc.ExposedPorts);
    setList(v, 'Env', cc.Env);
    setList(v, 'Entrypoint', cc.Entrypoint ?? undefined);
    setList(v, 'Cmd', cc.Cmd ?? undefined);
    setMap(v, 'Volumes', cc.Volumes);
    set(v, 'WorkingDir', cc.WorkingDir);
    setMap(v, 'Labels', cc.Labels);
    set(v, 'StopSignal', cc.StopSignal);
    if (cc.ArgsEscaped) v['ArgsEscaped'] = true;
    view['config'] = v;
  } else {
    view['config'] = {};
  }
  view['rootfs'] = { type: c.rootfs.type, diff_ids: c.rootfs.diff_ids };
  if (c.history?.length) {
    view['history'] = c.history.map((h) => {
      const e: Record<string, unknown> = {};
      set(e, 'created', h.created);
      set(e, 'created_by', h.created_by);
      set(e, 'author', h.author);
      set(e, 'comment', h.comment);
      if (h.empty_layer) e['empty_layer'] = true;
      return e;
    });
  }
  return view;
}

function set(o: Record<string, unknown>, k: string, v: string | undefined): void {
  if (v !== undefined && v !== '') o[k] = v;
}
function setList(o: Record<string, unknown>, k: string, v: unknown[] | undefined): void {
  if (v !== undefined && v.length > 0) o[k] = v;
}
function setMap(o: Record<string, unknown>, k: string, v: object | undefined): void {
  if (v !== undefined && Object.keys(v).length > 0) o[k] = v;
}
