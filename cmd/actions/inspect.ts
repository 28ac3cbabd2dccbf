import type { GlobalOptions } from '../main.ts';
import { HoistError } from '../../src/errors.ts';
import { openSource } from '../../src/transport/index.ts';
import { parseImageReference } from '../../src/transport/reference.ts';
import { parseManifest } from '../../src/oci/manifest.ts';
import { parseConfig } from '../../src/oci/config.ts';
import { bestPlatformMatch, formatPlatform, hostPlatform, parsePlatform } from '../../src/oci/platform.ts';
import { inspectOutput, ociConfigView } from '../../src/inspect/skopeo-json.ts';
import { goJson } from '../../src/util/go-json.ts';
import { readAll } from '../../src/util/stream.ts';
import { renderTemplate } from '../../src/inspect/template.ts';
import type { ImageManifest, ManifestBlob } from '../../src/oci/types.ts';
import { overridePlatform, registryAccess, type OverrideFlags, type RegistryFlags } from '../registry-flags.ts';

interface InspectFlags extends RegistryFlags, OverrideFlags {
  format?: string;
  raw?: boolean;
  config?: boolean;
  tags?: boolean;
  platform?: string;
}

export default async function inspect(g: GlobalOptions, refArg: string, flags: InspectFlags): Promise<number> {
  const ref = parseImageReference(refArg);
  if (flags.format !== undefined && flags.raw) {
    throw new HoistError('BAD_FLAG', '--format and --raw do not go together: --raw prints the bytes as they are', { exitCode: 2 });
  }
  const src = await openSource(ref, { storeRoot: g.root, registry: await registryAccess(flags) });
  try {
    const top = await src.getManifest();
    if (flags.raw && !flags.config) {
      process.stdout.write(top.bytes);
      return 0;
    }
    const want = flags.platform ? parsePlatform(flags.platform) : (overridePlatform(flags, hostPlatform()) ?? hostPlatform());
    const image = await pickImage(src.name, top, want, (d) => src.getManifest(d));
    const manifest = image.manifest;
    const configBytes = await readAll(await src.getBlob(manifest.config));
    if (flags.config && flags.raw) {
      process.stdout.write(configBytes);
      return 0;
    }
    const config = parseConfig(configBytes, `${src.name} config ${manifest.config.digest}`);
    if (flags.config) {
      const view = ociConfigView(config);
      process.stdout.write(flags.format !== undefined ? formatted(flags.format, view) : goJson(view, 4) + '\n');
      return 0;
    }
    const isRegistry = ref.transport === 'docker';
    const repoTags = isRegistry && flags.tags !== false && src.listTags ? await src.listTags() : [];
    const out = inspectOutput({
      name: isRegistry ? repositoryName(src.name) : undefined,
      digest: top.digest,
      repoTags,
      manifest,
      config,
    });
    process.stdout.write(flags.format !== undefined ? formatted(flags.format, out) : goJson(out, 4) + '\n');
    return 0;
  } finally {
    await src.close();
  }
}

async function pickImage(
  name: string,
  blob: ManifestBlob,
  want: ReturnType<typeof hostPlatform>,
  fetch: (digest: string) => Promise<ManifestBlob>,
): Promise<{ blob: ManifestBlob; manifest: ImageManifest }> {
  const parsed = parseManifest(blob.bytes, `${name} manifest`, blob.mediaType);
  if (parsed.kind === 'image') return { blob, manifest: parsed.manifest };
  const d = bestPlatformMatch(want, parsed.index.manifests);
  if (!d) {
    const has = parsed.index.manifests.filter((m) => m.platform).map((m) => formatPlatform(m.platform!));
    throw new HoistError('PLATFORM_NOT_FOUND', `${name}: no image for platform ${formatPlatform(want)} in the index (has ${has.join(', ') || 'none'}); pick one with --platform`);
  }
  return pickImage(name, await fetch(d.digest), want, fetch);
}

/** `docker://host/repo:tag` → `host/repo` (skopeo's Name). */
function repositoryName(name: string): string {
  const s = name.replace(/^docker:\/\//, '');
  const at = s.indexOf('@');
  const noDigest = at >= 0 ? s.slice(0, at) : s;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

/** skopeo ends a template's output with a newline unless the template already does. */
function formatted(template: string, data: unknown): string {
  const s = renderTemplate(template, data);
  return s.endsWith('\n') ? s : `${s}\n`;
}
