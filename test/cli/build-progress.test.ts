/**
 * Build progress rendering: BuildKit-style plain lines for CI, the live TTY view, quiet. Fed with the events the
 * builder emits, written into a buffer standing in for stderr.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { makeBuildProgress } from '../../cmd/build-progress.ts';
import type { BuildEvent } from '../../src/build/builder.ts';

function sink(tty: boolean): { out: NodeJS.WriteStream; text: () => string } {
  const s = new PassThrough();
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  Object.assign(s, { isTTY: tty, columns: 60 });
  return { out: s as unknown as NodeJS.WriteStream, text: () => Buffer.concat(chunks).toString('utf8') };
}

const EVENTS: BuildEvent[] = [
  { type: 'step', id: 1, stage: 'deps', n: 1, of: 3, text: 'FROM busybox' },
  { type: 'done', id: 1, ms: 10 },
  { type: 'step', id: 2, stage: 'deps', n: 2, of: 3, text: 'COPY . /src' },
  { type: 'cached', id: 2 },
  { type: 'done', id: 2, ms: 1 },
  { type: 'step', id: 3, stage: 'deps', n: 3, of: 3, text: 'RUN make' },
  { type: 'output', id: 3, chunk: Buffer.from('compiling a\ncompil') },
  { type: 'output', id: 3, chunk: Buffer.from('ing b\nno newline at the end') },
  { type: 'warning', message: 'one or more build-args [X] were not consumed' },
  { type: 'done', id: 3, ms: 1234 },
];

test('plain: numbered step lines, RUN output as whole prefixed lines, CACHED without DONE, DONE with the time', () => {
  const { out, text } = sink(false);
  const p = makeBuildProgress('plain', out);
  for (const e of EVENTS) p.event(e);
  p.finish();
  const lines = text().split('\n').filter((l) => l !== '');
  assert.deepEqual(lines.map((l) => l.replace(/^(#3) \d+\.\d{3} /, '$1 T ')), [
    '#1 [deps 1/3] FROM busybox',
    '#1 DONE 0.0s',
    '#2 [deps 2/3] COPY . /src',
    '#2 CACHED',
    '#3 [deps 3/3] RUN make',
    '#3 T compiling a',
    '#3 T compiling b',
    'hoist: warning: one or more build-args [X] were not consumed',
    '#3 T no newline at the end',
    '#3 DONE 1.2s',
  ]);
});

test('auto picks plain when stderr is not a terminal, tty when it is', () => {
  const plain = sink(false);
  const p = makeBuildProgress('auto', plain.out);
  p.event(EVENTS[0]!);
  p.finish();
  assert.equal(plain.text(), '#1 [deps 1/3] FROM busybox\n');
  const tty = sink(true);
  const t = makeBuildProgress('auto', tty.out);
  t.event(EVENTS[0]!);
  t.finish();
  assert.match(tty.text(), /\[\+\] Building/);
});

test('tty: a redrawn view with every step, CACHED or its time, and the warning after the view', () => {
  const { out, text } = sink(true);
  const p = makeBuildProgress('tty', out);
  for (const e of EVENTS) p.event(e);
  p.finish();
  const all = text();
  // The last frame: after the final cursor-up, the view as it ends.
  const frames = all.split(/\x1b\[\d+F/);
  const last = frames[frames.length - 1]!.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  const lines = last.split('\n').filter((l) => l.trim() !== '');
  assert.match(lines[0]!, /^\[\+\] Building \d+\.\ds$/);
  assert.match(lines[1]!, /#1 \[deps 1\/3\] FROM busybox +0\.0s$/);
  assert.match(lines[2]!, /#2 \[deps 2\/3\] COPY \. \/src +CACHED$/);
  assert.match(lines[3]!, /#3 \[deps 3\/3\] RUN make +1\.2s$/);
  assert.equal(lines[4], 'hoist: warning: one or more build-args [X] were not consumed');
  assert.ok(lines.every((l) => l.length <= 60), 'lines fit the terminal width');
});

test('tty: a running RUN shows the tail of its output under it', () => {
  const { out, text } = sink(true);
  const p = makeBuildProgress('tty', out);
  p.event({ type: 'step', id: 1, stage: '0', n: 1, of: 1, text: 'RUN seq 20' });
  p.event({ type: 'output', id: 1, chunk: Buffer.from(Array.from({ length: 20 }, (_, i) => `line ${i + 1}`).join('\n') + '\n') });
  p.finish();
  const shown = text().replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
  assert.match(shown, /line 20/);
  assert.doesNotMatch(shown, /line 14\n/, 'only the last lines are shown');
});

test('quiet: only warnings', () => {
  const { out, text } = sink(false);
  const p = makeBuildProgress('quiet', out);
  for (const e of EVENTS) p.event(e);
  p.finish();
  assert.equal(text(), 'hoist: warning: one or more build-args [X] were not consumed\n');
});
