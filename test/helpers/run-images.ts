/**
 * Helpers for the `hoist run` CLI tests (test/cli/run-*.test.ts):
 *   - images built on the busybox base (testdata/make-busybox.ts) with one more layer and a config of the test's
 *     choosing (Entrypoint, Cmd, Env, WorkingDir, User…), or with a hand-crafted layer tar (hostile names);
 *   - a hoist started as the rootless user that keeps running while the test looks at it (signals, /proc, rm -f);
 *   - the filesystem listing a container (or a chroot) prints, for comparing trees made by different unpackers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { digestBytes } from '../../src/oci/digest.ts';
import { OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST } from '../../src/oci/mediatype.ts';
import { OciLayout } from '../../src/store/layout.ts';
import { readAll } from '../../src/util/stream.ts';
import { makeBusyboxImage } from '../../testdata/make-busybox.ts';
import { hostIds, isRoot, USER_PATH } from './rootless.ts';
import { HOIST, type RunResult } from './run.ts';

/** One tar entry, written exactly as given (no parent directories added, the name not cleaned). */
export interface RawEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

/** An uncompressed layer tar of exactly these entries, in this order. */
export async function rawLayerTar(entries: RawEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const mtime = new Date(0);
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name, type, mtime, uid: e.uid ?? 0, gid: e.gid ?? 0,
      mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
    };
    if (type === 'file') pack.entry(header, e.content ?? '');
    else pack.entry(header);
  }
  pack.finalize();
  return readAll(pack as unknown as Readable, 64 * 1024 * 1024);
}

export interface DerivedImage {
  /** `oci:LAYOUT:REF` for `hoist copy`. */
  ref: string;
  digest: string;
}

/**
 * Writes `name` into the OCI layout `layout`: the busybox image (made there first, under the ref `busybox`, when
 * missing) plus `layers` (uncompressed tars, gzipped here), with `config` merged into the image config's `config`
 * (a key set to undefined is removed).
 */
export async function busyboxDerived(layout: string, name: string, layers: Buffer[], config: Record<string, unknown> = {}): Promise<DerivedImage> {
  const oci = await OciLayout.open(layout, { create: true });
  let base = await oci.resolveRef('busybox');
  if (base === undefined) {
    await makeBusyboxImage(layout, 'busybox');
    base = (await oci.resolveRef('busybox'))!;
  }
  const manifest = JSON.parse((await oci.readBlob(base.digest)).toString('utf8')) as {
    config: { digest: string }; layers: { mediaType: string; digest: string; size: number }[];
  };
  const cfg = JSON.parse((await oci.readBlob(manifest.config.digest)).toString('utf8')) as {
    config: Record<string, unknown>; rootfs: { diff_ids: string[] }; history: unknown[];
  };
  const newLayers = [...manifest.layers];
  for (const tar of layers) {
    const gz = gzipSync(tar);
    newLayers.push({ mediaType: OCI_LAYER_GZIP, digest: await oci.putBlobBytes(gz), size: gz.length });
    cfg.rootfs.diff_ids.push(digestBytes(tar));
    cfg.history.push({ created: '1970-01-01T00:00:00Z', created_by: `test/helpers/run-images.ts ${name}` });
  }
  const merged: Record<string, unknown> = { ...cfg.config };
  for (const [k, v] of Object.entries(config)) {
    if (v === undefined) delete merged[k];
    else merged[k] = v;
  }
  cfg.config = merged;
  const cfgBytes = Buffer.from(JSON.stringify(cfg));
  const cfgDigest = await oci.putBlobBytes(cfgBytes);
  const mBytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: cfgDigest, size: cfgBytes.length },
    layers: newLayers,
  }));
  const digest = await oci.putBlobBytes(mBytes);
  await oci.setRef(name, { mediaType: OCI_MANIFEST, digest, size: mBytes.length });
  return { ref: `oci:${layout}:${name}`, digest };
}

export interface Background {
  child: ChildProcess;
  /** stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout matches `re` (rejects if the process ends first). */
  waitForStdout(re: RegExp): Promise<void>;
  /** The hoist process itself (not runuser's). */
  hoistPid(): Promise<number>;
  exit: Promise<RunResult>;
  /** For `finally`: if still running, has hoist kill its container (SIGUSR2, what `hoist rm -f` sends) and waits. */
  stop(): Promise<void>;
}

/**
 * Starts `hoist ARGS` as `user` (HOIST_ROOT=root, HOME=home) in the background, in the same clean environment as
 * hoistAs, and returns at once. Root goes through `runuser … env -i`; the user itself spawns hoist directly.
 */
export function hoistInBackground(user: string, root: string, home: string, args: string[]): Background {
  const env: Record<string, string> = {
    PATH: USER_PATH, HOME: home, USER: user, LOGNAME: user, LANG: 'C.UTF-8', TMPDIR: '/tmp',
    NODE_COMPILE_CACHE: path.join(home, '.cache', 'node-compile-cache'), HOIST_ROOT: root,
  };
  const viaRunuser = isRoot() && hostIds(user).uid !== 0;
  const child = viaRunuser
    ? spawn('runuser', ['-u', user, '--', '/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, HOIST, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, ['--', HOIST, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString('utf8');
    for (const w of waiters.splice(0)) w();
  });
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8');
  });
  const exit = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      for (const w of waiters.splice(0)) w();
      resolve({ code: code ?? (signal ? 128 : 1), stdout: out, stderr: err });
    });
  });
  let ended = false;
  void exit.then(() => { ended = true; }, () => { ended = true; });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForStdout(re: RegExp): Promise<void> {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (re.test(out)) resolve();
          else if (ended) reject(new Error(`hoist ${args.join(' ')} ended before printing ${re}:\nstdout: ${out}\nstderr: ${err}`));
          else waiters.push(check);
        };
        check();
      });
    },
    async stop(): Promise<void> {
      if (ended) return;
      try {
        process.kill(await this.hoistPid(), 'SIGUSR2');
      } catch {
        // already gone
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit.catch(() => {});
      clearTimeout(timer);
    },
    async hoistPid(): Promise<number> {
      if (!viaRunuser) return child.pid!;
      // runuser forks once and waits: its only child is `env`, which exec'd node.
      const text = await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8');
      const pid = Number(text.trim().split(/\s+/)[0]);
      if (!Number.isInteger(pid) || pid <= 0) throw new Error(`runuser (pid ${child.pid}) has no child process`);
      return pid;
    },
  };
}

/** Pids of the processes whose argv is exactly `argv` (read from /proc/PID/cmdline). */
export async function pidsWithArgv(argv: string[]): Promise<number[]> {
  const want = `${argv.join('\0')}\0`;
  const out: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if ((await readFile(`/proc/${p}/cmdline`, 'utf8')) === want) out.push(Number(p));
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** The Uid: or Gid: line of /proc/PID/status as numbers (real, effective, saved, filesystem). */
export async function procIds(pid: number, which: 'Uid' | 'Gid'): Promise<number[]> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const line = status.split('\n').find((l) => l.startsWith(`${which}:`));
  if (line === undefined) throw new Error(`/proc/${pid}/status has no ${which} line`);
  return line.slice(which.length + 1).trim().split(/\s+/).map(Number);
}

/**
 * A shell script for busybox that lists the whole tree, one entry a line: path|type|mode|uid|gid|size|links|target
 * (size and link count left empty for directories: overlay's merged directories and a plain directory differ there
 * without any content difference). /proc, /sys and /dev are left out (the runtime's mounts).
 */
export const LIST_TREE = 'find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -exec stat -c \'%n|%F|%a|%u|%g|%s|%h|%N\' {} +';

/** The lines LIST_TREE printed, sorted, with directory sizes and link counts blanked and `skip` paths dropped. */
export function normalizeTree(text: string, skip: string[] = []): string[] {
  return text.split('\n').filter((l) => l !== '').map((l) => {
    const f = l.split('|');
    if (f[1] === 'directory') {
      f[5] = '';
      f[6] = '';
    }
    return f.join('|');
  }).filter((l) => !skip.includes(l.split('|')[0]!)).sort();
}

/** `s` quoted for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
