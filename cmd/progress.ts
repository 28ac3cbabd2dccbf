/**
 * Copy progress, always on stderr (stdout carries data only: piped output is never corrupted).
 * - tty: live bars, one per blob in flight plus a total line with bytes/s, redrawn at most 10×/s;
 * - plain: one line per blob event, what CI logs want;
 * - quiet: nothing.
 * `auto` picks tty when stderr is a terminal (and TERM isn't dumb), else plain.
 */
import type { CopyEvent, CopyResult } from '../src/copy/engine.ts';

export type ProgressMode = 'auto' | 'tty' | 'plain' | 'quiet';

export interface Progress {
  onEvent: (e: CopyEvent) => void;
  done: (r: CopyResult) => void;
}

export function makeProgress(mode: string | undefined, quiet: boolean | undefined, out: NodeJS.WriteStream = process.stderr): Progress | undefined {
  const m = quiet ? 'quiet' : (mode ?? 'auto');
  if (m === 'quiet') return undefined;
  if (m === 'plain') return plainProgress(out);
  if (m === 'tty') return ttyProgress(out);
  if (m === 'auto') return out.isTTY && process.env['TERM'] !== 'dumb' ? ttyProgress(out) : plainProgress(out);
  throw new Error(`--progress: unknown mode "${m}"; use auto, tty, plain or quiet`);
}

const short = (d: string) => d.replace(/^sha\d+:/, '').slice(0, 12);

export function plainProgress(out: NodeJS.WritableStream): Progress {
  return {
    onEvent(e) {
      switch (e.type) {
        case 'blob-skip': out.write(`Skipping blob ${short(e.digest)} (already present)\n`); break;
        case 'blob-mount': out.write(`Mounted blob ${short(e.digest)} from ${e.from}\n`); break;
        case 'blob-start': out.write(`Copying blob ${short(e.digest)} (${formatBytes(e.size)})\n`); break;
        case 'blob-done': out.write(`Copied blob ${short(e.digest)}\n`); break;
        case 'blob-retry': out.write(`Upload of blob ${short(e.digest)} was interrupted; sending it again (attempt ${e.attempt + 1})\n`); break;
        case 'manifest': out.write(`${e.skipped ? 'Manifest present' : 'Writing manifest'} ${short(e.digest)}\n`); break;
        default: break;
      }
    },
    done(r) {
      out.write(`Copied ${r.blobsCopied} blob(s) (${formatBytes(r.bytesCopied)}), skipped ${r.blobsSkipped}; manifest ${r.digest}\n`);
    },
  };
}

export function ttyProgress(out: NodeJS.WriteStream): Progress {
  const active = new Map<string, { size: number; bytes: number }>();
  let done = 0;
  let skipped = 0;
  let total = 0;
  let drawnLines = 0;
  let last = 0;
  const start = Date.now();
  const width = () => Math.max(20, Math.min(40, (out.columns ?? 80) - 50));

  const bar = (bytes: number, size: number) => {
    const w = width();
    const filled = size > 0 ? Math.min(w, Math.round((bytes / size) * w)) : w;
    return `[${'='.repeat(filled)}${' '.repeat(w - filled)}]`;
  };
  const draw = (force = false) => {
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    const lines: string[] = [];
    for (const [d, b] of active) lines.push(`${short(d)} ${bar(b.bytes, b.size)} ${formatBytes(b.bytes)} / ${formatBytes(b.size)}`);
    const secs = Math.max(0.001, (now - start) / 1000);
    lines.push(`blobs: ${done} copied, ${skipped} present, ${active.size} in flight · ${formatBytes(total)} at ${formatBytes(total / secs)}/s`);
    // Move up over what we drew last time and clear each line.
    let s = drawnLines > 0 ? `\x1b[${drawnLines}F` : '';
    for (const l of lines) s += `\x1b[2K${l}\n`;
    for (let i = lines.length; i < drawnLines; i++) s += '\x1b[2K\n';
    out.write(s);
    drawnLines = Math.max(lines.length, drawnLines);
  };

  return {
    onEvent(e) {
      switch (e.type) {
        case 'blob-start': active.set(e.digest, { size: e.size, bytes: 0 }); break;
        case 'blob-progress': {
          const b = active.get(e.digest);
          if (b) { total += e.bytes - b.bytes; b.bytes = e.bytes; }
          break;
        }
        case 'blob-done': active.delete(e.digest); done++; break;
        case 'blob-skip': case 'blob-mount': skipped++; break;
        default: break;
      }
      draw(e.type !== 'blob-progress');
    },
    done(r) {
      draw(true);
      out.write(`Copied ${r.blobsCopied} blob(s) (${formatBytes(r.bytesCopied)}), skipped ${r.blobsSkipped}; manifest ${r.digest}\n`);
    },
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${Math.round(n)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
