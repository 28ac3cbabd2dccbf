/**
 * Build progress on stderr (stdout carries only the image ID).
 * - plain (CI): BuildKit-style prefixed lines, `#3 [deps 2/3] RUN …`, RUN output streamed as `#3 0.412 line`, then
 *   `#3 DONE 1.2s` or `#3 CACHED`;
 * - tty: a live view redrawn at most 10×/s: one line per step (cached / running with its time / done with its time)
 *   and, under each running RUN, the last lines of its output;
 * - quiet: warnings only.
 */
import type { BuildEvent } from '../src/build/builder.ts';

export interface BuildProgress {
  event(e: BuildEvent): void;
  finish(): void;
}

export function makeBuildProgress(mode: string, out: NodeJS.WriteStream = process.stderr): BuildProgress {
  const m = mode === 'auto' ? (out.isTTY && process.env['TERM'] !== 'dumb' ? 'tty' : 'plain') : mode;
  if (m === 'plain') return plain(out);
  if (m === 'tty') return tty(out);
  if (m === 'quiet') return quiet(out);
  throw new Error(`--progress ${mode}: unknown mode; use auto, tty, plain or quiet`);
}

function quiet(out: NodeJS.WritableStream): BuildProgress {
  return {
    event(e) {
      if (e.type === 'warning') out.write(`hoist: warning: ${e.message}\n`);
    },
    finish() {},
  };
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

function plain(out: NodeJS.WritableStream): BuildProgress {
  const started = new Map<number, number>();
  // Unfinished lines per step and stream (`id/stream`): a process's stdout and stderr must not mix within a line.
  const partial = new Map<string, string>();
  const cached = new Set<number>();
  const flush = (key: string, final: boolean): void => {
    const rest = partial.get(key);
    if (rest === undefined) return;
    const id = Number(key.slice(0, key.indexOf('/')));
    const lines = rest.split('\n');
    const keep = final ? '' : lines.pop()!;
    const t = ((Date.now() - (started.get(id) ?? Date.now())) / 1000).toFixed(3);
    for (const l of final ? lines.filter((x, i) => i < lines.length - 1 || x !== '') : lines) out.write(`#${id} ${t} ${l}\n`);
    if (keep) partial.set(key, keep);
    else partial.delete(key);
  };
  return {
    event(e) {
      switch (e.type) {
        case 'step':
          started.set(e.id, Date.now());
          out.write(`#${e.id} [${e.stage} ${e.n}/${e.of}] ${e.text}\n`);
          break;
        case 'output': {
          const key = `${e.id}/${e.stream ?? 1}`;
          partial.set(key, (partial.get(key) ?? '') + e.chunk.toString('utf8'));
          flush(key, false);
          break;
        }
        case 'cached':
          cached.add(e.id);
          out.write(`#${e.id} CACHED\n`);
          break;
        case 'done':
          if (cached.has(e.id)) break;
          flush(`${e.id}/1`, true);
          flush(`${e.id}/2`, true);
          out.write(`#${e.id} DONE ${secs(e.ms)}\n`);
          break;
        case 'warning':
          out.write(`hoist: warning: ${e.message}\n`);
          break;
        case 'info':
          out.write(`${e.message}\n`);
          break;
      }
    },
    finish() {
      for (const key of [...partial.keys()]) flush(key, true);
    },
  };
}

interface TtyStep {
  text: string;
  start: number;
  ms?: number;
  cached: boolean;
  tail: string[];
  /** Unfinished line per stream (1 stdout, 2 stderr). */
  partial: Map<number, string>;
}

function tty(out: NodeJS.WriteStream): BuildProgress {
  const steps = new Map<number, TtyStep>();
  const notes: string[] = [];
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const t0 = Date.now();
  const TAIL = 6;

  const draw = (): void => {
    const width = Math.max(40, out.columns ?? 80);
    const lines: string[] = [`[+] Building ${secs(Date.now() - t0)}`];
    for (const [id, s] of steps) {
      const state = s.cached ? 'CACHED' : s.ms !== undefined ? secs(s.ms) : secs(Date.now() - s.start);
      const head = ` => ${s.ms === undefined && !s.cached ? '' : ''}#${id} ${s.text}`;
      lines.push(`${head.slice(0, width - state.length - 2).padEnd(width - state.length - 1)}${state}`);
      if (s.ms === undefined && !s.cached) for (const l of s.tail) lines.push(`    ${l}`.slice(0, width - 1));
    }
    out.write(`${drawn ? `\x1b[${drawn}F` : ''}${lines.map((l) => `${l}\x1b[K`).join('\n')}\n\x1b[J`);
    drawn = lines.length;
  };
  const schedule = (): void => {
    timer ??= setTimeout(() => {
      timer = undefined;
      draw();
    }, 100);
  };
  const ticker = setInterval(draw, 500);
  ticker.unref();

  return {
    event(e) {
      switch (e.type) {
        case 'step':
          steps.set(e.id, { text: `[${e.stage} ${e.n}/${e.of}] ${e.text}`, start: Date.now(), cached: false, tail: [], partial: new Map() });
          break;
        case 'output': {
          const s = steps.get(e.id);
          if (!s) break;
          const lines = ((s.partial.get(e.stream ?? 1) ?? '') + e.chunk.toString('utf8')).split('\n');
          s.partial.set(e.stream ?? 1, lines.pop()!);
          s.tail = [...s.tail, ...lines].slice(-TAIL);
          break;
        }
        case 'cached': {
          const s = steps.get(e.id);
          if (s) s.cached = true;
          break;
        }
        case 'done': {
          const s = steps.get(e.id);
          if (s) s.ms = e.ms;
          break;
        }
        case 'warning':
        case 'info':
          notes.push(e.type === 'warning' ? `hoist: warning: ${e.message}` : e.message);
          break;
      }
      schedule();
    },
    finish() {
      clearInterval(ticker);
      if (timer) clearTimeout(timer);
      draw();
      for (const n of notes) out.write(`${n}\n`);
    },
  };
}
