/** withLock: exclusion inside a process and across real processes, stealing dead locks, waiting on live ones. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HoistError } from '../../src/errors.ts';
import { lockHolder, pidAlive, withLock } from '../../src/store/lock.ts';
import { run } from '../helpers/run.ts';

const COUNTER = fileURLToPath(new URL('./fixtures/lock-counter.ts', import.meta.url));

let tmp: string;
before(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'hoist-')); });
after(async () => { await rm(tmp, { recursive: true, force: true }); });

/** The pid of a process that has exited (so it is dead on this host). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  const pid = child.pid!;
  await new Promise((r) => child.on('exit', r));
  assert.equal(pidAlive(pid), false);
  return pid;
}

function lockContent(pid: number, host = hostname()): string {
  return JSON.stringify({ pid, hostname: host, time: '2020-01-01T00:00:00.000Z', nonce: 'feedface' }) + '\n';
}

test('calls in one process run one at a time and the lock file is gone afterwards', async () => {
  const lock = path.join(tmp, 'a.lock');
  let inside = 0;
  let maxInside = 0;
  const order: number[] = [];
  await Promise.all(Array.from({ length: 10 }, (_, i) => withLock(lock, async () => {
    inside++;
    maxInside = Math.max(maxInside, inside);
    assert.equal((await lockHolder(lock))?.pid, process.pid);
    await new Promise((r) => setTimeout(r, 2));
    order.push(i);
    inside--;
  })));
  assert.equal(maxInside, 1);
  assert.equal(order.length, 10);
  assert.equal(await lockHolder(lock), undefined);
});

test('the result and the error of fn come through, and the lock is released either way', async () => {
  const lock = path.join(tmp, 'b.lock');
  assert.equal(await withLock(lock, async () => 42), 42);
  await assert.rejects(withLock(lock, async () => { throw new Error('inner'); }), /inner/);
  assert.equal(await withLock(lock, async () => 'again'), 'again');
  assert.deepEqual((await readdir(tmp)).filter((f) => f.startsWith('b.lock')), []);
});

test('a lock left by a dead process on this host is stolen', async () => {
  const lock = path.join(tmp, 'dead.lock');
  await writeFile(lock, lockContent(await deadPid()));
  assert.equal(await withLock(lock, async () => 'got it', { timeoutMs: 5000 }), 'got it');
  assert.equal(await lockHolder(lock), undefined);
});

test('a live holder is waited for, and a timeout names the holder and the file', async () => {
  const lock = path.join(tmp, 'live.lock');
  // pid 1 always runs; another host's lock is never stolen either
  await writeFile(lock, lockContent(1));
  await assert.rejects(withLock(lock, async () => 'no', { timeoutMs: 200 }), (e: HoistError) =>
    e.code === 'LOCKED' && e.message.includes('pid 1') && e.message.includes(lock) && !e.message.includes('\n'));
  await writeFile(lock, lockContent(await deadPid(), 'some-other-host'));
  await assert.rejects(withLock(lock, async () => 'no', { timeoutMs: 200 }), (e: HoistError) =>
    e.code === 'LOCKED' && e.message.includes('some-other-host'));
  // released by its holder while we wait: we get it
  await writeFile(lock, lockContent(1));
  setTimeout(() => { void rm(lock); }, 100);
  assert.equal(await withLock(lock, async () => 'after wait', { timeoutMs: 10_000 }), 'after wait');
});

test('processes exclude each other, including when they all race to steal the same dead lock', async () => {
  const lock = path.join(tmp, 'multi.lock');
  const counter = path.join(tmp, 'counter');
  const go = path.join(tmp, 'go');
  await writeFile(counter, '0');
  await writeFile(lock, lockContent(await deadPid())); // every child starts by finding this dead lock
  const procs = 6;
  const rounds = 25;
  const children = Array.from({ length: procs }, () => run(process.execPath, [COUNTER, lock, counter, String(rounds), go]));
  setTimeout(() => { void writeFile(go, ''); }, 300);
  for (const r of await Promise.all(children)) assert.equal(r.code, 0, r.stderr);
  // An overlap anywhere would have lost an increment (read-sleep-write under the lock).
  assert.equal(Number(await readFile(counter, 'utf8')), procs * rounds);
  assert.equal(await lockHolder(lock), undefined);
  assert.deepEqual((await readdir(tmp)).filter((f) => f.startsWith('multi.lock')), [], 'no lock or steal-guard file left');
});
