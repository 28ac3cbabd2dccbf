/**
 * The parts of a `docker save` archive that only old Docker reads, computed byte for byte as containers/image
 * writes them (docker/internal/tarfile/writer.go, writeLegacyMetadataLocked), so an archive hoist writes matches
 * one skopeo writes: one `<layerID>/` directory per layer with `VERSION`, `json` and a `layer.tar` symlink, and
 * `repositories` naming the top layer ID.
 *
 * Layer IDs are sha256 over Go's json.Marshal of a map (keys sorted, HTML-safe escapes), where the top layer's map
 * carries seven fields of the image config as json.RawMessage, which Go re-emits compacted. The helpers here
 * reproduce exactly that from the raw config text, so numbers and escapes keep their original spelling.
 */
import { createHash } from 'node:crypto';

/** Go's json.Compact with HTML escaping (what encoding/json does to a json.RawMessage it marshals). */
export function goCompact(raw: string): string {
  let out = '';
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (inString) {
      if (c === '\\') {
        out += c + (raw[i + 1] ?? '');
        i++;
        continue;
      }
      if (c === '"') inString = false;
    } else if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      continue;
    } else if (c === '"') {
      inString = true;
    }
    out += goEscapeChar(c);
  }
  return out;
}

function goEscapeChar(c: string): string {
  switch (c) {
    case '<': return '\\u003c';
    case '>': return '\\u003e';
    case '&': return '\\u0026';
    case '\u2028': return '\\u2028';
    case '\u2029': return '\\u2029';
    default: return c;
  }
}

/** A JSON string as Go's encoder writes it. */
function goString(s: string): string {
  return goCompact(JSON.stringify(s));
}

/** Index just past the JSON value starting at `i` (after whitespace). */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') {
    for (let j = i + 1; j < text.length; j++) {
      if (text[j] === '\\') j++;
      else if (text[j] === '"') return j + 1;
    }
    return text.length;
  }
  if (c === '{' || c === '[') {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text[j];
      if (d === '"') {
        j = skipValue(text, j) - 1;
      } else if (d === '{' || d === '[') {
        depth++;
      } else if (d === '}' || d === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
    }
    return text.length;
  }
  let j = i;
  while (j < text.length && !/[\s,}\]]/.test(text[j]!)) j++;
  return j;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && /\s/.test(text[i]!)) i++;
  return i;
}

/**
 * The raw text of each top-level member of a JSON object, as Go's Unmarshal into map[string]*json.RawMessage
 * sees it (a repeated key keeps its last value). The text must already be known to be a valid JSON object.
 */
export function topLevelRawMembers(text: string): Map<string, string> {
  const members = new Map<string, string>();
  let i = skipSpace(text, 0);
  if (text[i] !== '{') return members;
  i = skipSpace(text, i + 1);
  while (i < text.length && text[i] !== '}') {
    const keyEnd = skipValue(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, keyEnd);
    i = skipSpace(text, i + 1); // ':'
    const valueEnd = skipValue(text, i);
    members.set(key, text.slice(i, valueEnd));
    i = skipSpace(text, valueEnd);
    if (text[i] === ',') i = skipSpace(text, i + 1);
  }
  return members;
}

/** Go's json.Marshal of a map whose values are already-encoded JSON: keys sorted by bytes, no spaces. */
function goMarshalMap(m: Map<string, string>): string {
  const keys = [...m.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `{${keys.map((k) => `${goString(k)}:${m.get(k)!}`).join(',')}}`;
}

export interface LegacyLayer {
  /** The legacy layer ID: the directory name. */
  id: string;
  /** Contents of `<id>/json`. */
  json: string;
  /** Hex of the layer's diffID: `<id>/layer.tar` links to `../<diffHex>.tar`. */
  diffHex: string;
}

/** The config fields containers/image copies into the top layer's `json`. */
const TOP_LAYER_FIELDS = ['architecture', 'config', 'container', 'container_config', 'created', 'docker_version', 'os'];

/**
 * The legacy layer directories for an image, bottom layer first; the last one's ID is what `repositories` names.
 * `diffIds` are the layers' uncompressed digests in manifest order; `configText` is the image config as stored.
 */
export function legacyLayers(diffIds: readonly string[], configText: string): LegacyLayer[] {
  const out: LegacyLayer[] = [];
  let chainId = '';
  let lastId = '';
  diffIds.forEach((diffId, i) => {
    const m = new Map<string, string>();
    if (lastId !== '') m.set('parent', goString(lastId));
    if (i === diffIds.length - 1) {
      const raw = topLevelRawMembers(configText);
      for (const f of TOP_LAYER_FIELDS) {
        const v = raw.get(f);
        m.set(f, v === undefined ? 'null' : goCompact(v));
      }
    }
    // docker/docker layer.CreateChainID: the bottom layer's chain ID is its diffID.
    chainId = chainId === '' ? diffId : `sha256:${createHash('sha256').update(`${chainId} ${diffId}`).digest('hex')}`;
    m.set('layer_id', goString(chainId));
    const id = createHash('sha256').update(goMarshalMap(m)).digest('hex');
    m.delete('layer_id');
    m.set('id', goString(id));
    out.push({ id, json: goMarshalMap(m), diffHex: diffId.slice(diffId.indexOf(':') + 1) });
    lastId = id;
  });
  return out;
}
