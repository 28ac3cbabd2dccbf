/**
 * Platforms (`linux/arm64/v8`): parsing what users type, normalizing the many spellings of one architecture
 * (uname's x86_64, Debian's armhf, Go's amd64), and picking an image from an index.
 * Normalization follows containerd's platforms package, which docker, buildkit and nerdctl share, so an index
 * entry matches here exactly when it matches there.
 */
import { arch as osArch, endianness } from 'node:os';
import { HoistError } from '../errors.ts';
import type { Descriptor, Platform } from './types.ts';

const PART = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Parses `os/arch[/variant]` as written (not normalized; see normalizePlatform). Throws BAD_PLATFORM. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || !parts.every((p) => PART.test(p))) {
    throw new HoistError('BAD_PLATFORM',
      `invalid platform "${s}": expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`, { exitCode: 2 });
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

/** Canonical architecture and variant for the aliases; no default variant is filled in here. */
function canonicalArch(arch: string, variant: string | undefined): { architecture: string; variant?: string } {
  const a = arch.toLowerCase();
  const v = variant === undefined || variant === '' ? undefined : variant.toLowerCase();
  switch (a) {
    case 'i386': case 'i486': case 'i586': case 'i686': case 'x86': case '386':
      return { architecture: '386' };
    case 'x86_64': case 'x86-64': case 'amd64':
      // v1 is the baseline every amd64 CPU has, so it says nothing.
      return v === undefined || v === 'v1' ? { architecture: 'amd64' } : { architecture: 'amd64', variant: v };
    case 'aarch64': case 'arm64':
      switch (v) {
        case undefined: return { architecture: 'arm64' };
        case '8': case 'v8': case 'v8.0': return { architecture: 'arm64', variant: 'v8' };
        case '9': case '9.0': case 'v9.0': return { architecture: 'arm64', variant: 'v9' };
        default: return { architecture: 'arm64', variant: v };
      }
    case 'armhf': case 'armv7l': case 'armv7':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel': case 'armv6l': case 'armv6':
      return { architecture: 'arm', variant: 'v6' };
    case 'armv5l': case 'armv5':
      return { architecture: 'arm', variant: 'v5' };
    case 'arm':
      if (v === undefined) return { architecture: 'arm' };
      return { architecture: 'arm', variant: /^[5-8]$/.test(v) ? `v${v}` : v };
    case 'ppc64el':
      return v === undefined ? { architecture: 'ppc64le' } : { architecture: 'ppc64le', variant: v };
    default:
      return v === undefined ? { architecture: a } : { architecture: a, variant: v };
  }
}

/** The variant an architecture has when an image or a user names none. */
const DEFAULT_VARIANT: Record<string, string> = { arm64: 'v8', arm: 'v7' };

function canonicalOs(os: string): string {
  const o = os.toLowerCase();
  return o === 'macos' ? 'darwin' : o;
}

/** Canonical spelling with default variants filled in, so `linux/aarch64` and `linux/arm64/v8` compare equal. */
export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = canonicalArch(p.architecture, p.variant);
  const out: Platform = { ...p, os: canonicalOs(p.os), architecture };
  const v = variant ?? DEFAULT_VARIANT[architecture];
  if (v === undefined) delete out.variant;
  else out.variant = v;
  return out;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

const NODE_ARCH: Record<string, string> = {
  x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64',
  mips: 'mips', mipsel: 'mipsle', mips64el: 'mips64le', ppc: 'ppc',
};

/** The platform this process runs on, in OCI spelling (`linux/amd64`). */
export function hostPlatform(): Platform {
  const os = process.platform === 'win32' ? 'windows' : process.platform;
  const a = osArch();
  if (a === 'ppc64') return { os, architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
  if (a === 'arm') {
    const armVersion = (process.config.variables as Record<string, unknown>)['arm_version'];
    return { os, architecture: 'arm', variant: `v${typeof armVersion === 'string' && armVersion !== '' ? armVersion : '7'}` };
  }
  return { os, architecture: NODE_ARCH[a] ?? a };
}

/**
 * True when `have` (an image's platform) satisfies `want` (what the user asked for).
 * A `want` without a variant accepts every variant of its architecture.
 */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return false;
  if (canonicalArch(want.architecture, want.variant).variant === undefined) return true;
  return w.variant === h.variant;
}

/**
 * The index entry to use for `want`: the first whose platform matches, preferring one whose variant is exactly
 * the wanted (or default) variant, so `linux/arm` picks arm/v7 over an earlier arm/v6.
 */
export function bestPlatformMatch(want: Platform, descriptors: Descriptor[]): Descriptor | undefined {
  const w = normalizePlatform(want);
  let fallback: Descriptor | undefined;
  for (const d of descriptors) {
    if (d.platform === undefined || !platformMatches(want, d.platform)) continue;
    if (normalizePlatform(d.platform).variant === w.variant) return d;
    fallback ??= d;
  }
  return fallback;
}
