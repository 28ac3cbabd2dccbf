/**
 * Progress for copies: always stderr (stdout carries data only). Plain mode writes one line per blob event,
 * which is what CI logs want; live TTY bars come with the registry work.
 */
import type { CopyEvent, CopyResult } from '../src/copy/engine.ts';

export interface Progress {
  onEvent: (e: CopyEvent) => void;
  done: (r: CopyResult) => void;
}

export function plainProgress(out: NodeJS.WritableStream): Progress {
  const short = (d: string) => d.replace(/^sha256:/, '').slice(0, 12);
  return {
    onEvent(e) {
      switch (e.type) {
        case 'blob-skip': out.write(`Skipping blob ${short(e.digest)} (already present)\n`); break;
        case 'blob-start': out.write(`Copying blob ${short(e.digest)} (${formatBytes(e.size)})\n`); break;
        case 'blob-done': out.write(`Copied blob ${short(e.digest)}\n`); break;
        case 'manifest': out.write(`${e.skipped ? 'Manifest present' : 'Writing manifest'} ${short(e.digest)}\n`); break;
        default: break;
      }
    },
    done(r) {
      out.write(`Copied ${r.blobsCopied} blob(s) (${formatBytes(r.bytesCopied)}), skipped ${r.blobsSkipped}; manifest ${r.digest}\n`);
    },
  };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
