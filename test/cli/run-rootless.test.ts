/**
 * `hoist run` as the unprivileged CI user (rootless: a user namespace made by unshare, runc inside it):
 * identity and ownership, exit codes, docker's rules for entrypoint/cmd/env/workdir/user, bad input, stdin/tty/
 * signals, ps/rm, networks. One store and one set of images for the whole file; independent cases run concurrently.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeLayerTar } from '../helpers/make-image.ts';
import { ciUser, hoistAs, hostIds, mkdirFor, rootlessSkipReason, runAs, userTempDir, type UserTempDir } from '../helpers/rootless.ts';
import { busyboxDerived, hoistInBackground, pidsWithArgv, procIds, shQuote } from '../helpers/run-images.ts';
import { HOIST, oneLine, show, type RunResult } from '../helpers/run.ts';

const skip = rootlessSkipReason();
const user = ciUser();

let tmp: UserTempDir;
let root: string;
let home: string;

const hoist = (args: string[], opts: { input?: string } = {}): Promise<RunResult> => hoistAs(user!, root, args, opts);
async function ok(args: string[], opts: { input?: string } = {}): Promise<RunResult> {
  const r = await hoist(args, opts);
  assert.equal(r.code, 0, show(r));
  return r;
}

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  'app:x:1000:1000:app:/home/app:/bin/sh',
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'wheel:x:10:app', 'app:x:1000:', 'extra:x:2000:nobody,app', 'other:x:3000:', ''].join('\n');

before(async () => {
  if (skip) return;
  tmp = await userTempDir(user!, 'hoist-run-cli-');
  root = path.join(tmp.dir, 'store');
  home = path.join(tmp.dir, 'home');
  await mkdirFor(user!, home);
  const layout = path.join(tmp.dir, 'images');
  // cfg: every config field docker's rules look at, and a passwd/group for -u and the image's User.
  const cfg = await busyboxDerived(layout, 'cfg', [await makeLayerTar({
    'etc/passwd': PASSWD, 'etc/group': GROUP, 'work/.keep': '', 'home/app/.keep': '',
  })], {
    Entrypoint: ['/bin/echo', 'ep'], Cmd: ['c1', 'c2'], WorkingDir: '/work', User: 'app',
    Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'FOO=img', 'BAR=img'],
  });
  // Cmd only, with a relative WorkingDir (docker refuses it at create time).
  const badwd = await busyboxDerived(layout, 'badwd', [], { WorkingDir: 'rel/dir' });
  // No Entrypoint and no Cmd.
  const nocmd = await busyboxDerived(layout, 'nocmd', [], { Cmd: undefined });
  await ok(['copy', '-q', `oci:${layout}:busybox`, 'busybox']);
  for (const [img, name] of [[cfg, 'cfg'], [badwd, 'badwd'], [nocmd, 'nocmd']] as const) await ok(['copy', '-q', img.ref, name]);
  // Unpack the shared snapshot once, before the concurrent cases.
  await ok(['run', '--rm', 'busybox', 'true']);
});

after(async () => {
  if (tmp) await tmp.cleanup();
});

test('inside, the process is root; on the host it is the user; a volume file belongs to the user', { skip }, async () => {
  const { uid, gid } = hostIds(user!);
  const r = await ok(['run', '--rm', 'busybox', 'sh', '-c', 'id -u; id -g; cat /proc/self/uid_map']);
  const [idu, idg, ...map] = r.stdout.trim().split('\n');
  assert.equal(idu, '0');
  assert.equal(idg, '0');
  // Container root is the user; 1.. the subordinate range (--map-auto).
  assert.deepEqual(map[0]!.trim().split(/\s+/).map(Number), [0, uid, 1]);
  assert.ok(map.length >= 2, `no subordinate range mapped:\n${r.stdout}`);

  const vol = path.join(tmp.dir, 'vol');
  await mkdirFor(user!, vol);
  await ok(['run', '--rm', '-v', `${vol}:/data`, 'busybox', 'sh', '-c', 'echo hi > /data/f']);
  const st = await stat(path.join(vol, 'f'));
  assert.equal(st.uid, uid);
  assert.equal(st.gid, gid);
  assert.equal(await readFile(path.join(vol, 'f'), 'utf8'), 'hi\n');
  const ro = await hoist(['run', '--rm', '-v', `${vol}:/data:ro`, 'busybox', 'touch', '/data/g']);
  assert.equal(ro.code, 1, show(ro));
  assert.match(ro.stderr, /Read-only file system/);
});

test('a running container\'s process belongs to the user on the host; ps shows it running; rm -f kills it', { skip }, async () => {
  const { uid, gid } = hostIds(user!);
  const bg = hoistInBackground(user!, root, home, ['run', '--name', 'sleeper', 'busybox', 'sh', '-c', 'echo ready; sleep 4711']);
  try {
    await bg.waitForStdout(/ready/);
    let pids: number[] = [];
    for (let i = 0; i < 50 && pids.length === 0; i++) {
      pids = await pidsWithArgv(['sleep', '4711']);
      if (pids.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(pids.length, 1, 'the container\'s sleep is not visible from the host');
    assert.deepEqual(await procIds(pids[0]!, 'Uid'), [uid, uid, uid, uid]);
    assert.deepEqual(await procIds(pids[0]!, 'Gid'), [gid, gid, gid, gid]);

    const ps = await ok(['ps']);
    assert.match(ps.stdout, /\n[0-9a-f]{12} +busybox +sh -c echo ready;.*Up .*sleeper\n/);
    const busy = await hoist(['rm', 'sleeper']);
    oneLine(busy, 125, /container sleeper is running; stop it first or use hoist rm -f/);

    const rm = await ok(['rm', '-f', 'sleeper']);
    assert.match(rm.stdout, /^[0-9a-f]{64}\n$/);
    const ended = await bg.exit;
    assert.equal(ended.code, 137, `killed container: ${show(ended)}`);
    assert.deepEqual(await pidsWithArgv(['sleep', '4711']), []);
    await assert.rejects(stat(path.join(root, 'containers', rm.stdout.trim())), { code: 'ENOENT' });
  } finally {
    await bg.stop();
  }
});

describe('exit codes propagate', { skip, concurrency: true }, () => {
  for (const code of [0, 1, 42, 126, 127]) {
    test(`exit ${code}`, async () => {
      const r = await hoist(['run', '--rm', 'busybox', 'sh', '-c', `echo out; exit ${code}`]);
      assert.equal(r.code, code, show(r));
      assert.equal(r.stdout, 'out\n');
    });
  }
  test('a command that is not there: 127 and one line', async () => {
    oneLine(await hoist(['run', '--rm', 'busybox', 'nosuchcmd']), 127, /nosuchcmd: executable file not found in \$PATH/);
    oneLine(await hoist(['run', '--rm', 'busybox', '/bin/nosuch']), 127, /\/bin\/nosuch: no such file or directory/);
  });
  test('a command that is not executable: 126 and one line', async () => {
    oneLine(await hoist(['run', '--rm', 'busybox', '/etc/passwd']), 126, /\/etc\/passwd: permission denied/);
  });
});

/** `hoist run --rm ARGS`, which must succeed; its stdout lines. */
async function lines(args: string[]): Promise<string[]> {
  return (await ok(['run', '--rm', ...args])).stdout.trimEnd().split('\n');
}
const envOf = (out: string[]): Map<string, string> => new Map(out.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
/** `id -u`, `id -g`, sorted `id -G`, $HOME and pwd from one container. */
const WHO = ['--entrypoint', '', 'cfg', 'sh', '-c', 'id -u; id -g; id -G | tr " " "\\n" | sort -n | tr "\\n" " "; echo; echo "$HOME"; pwd'];

describe('entrypoint, cmd, env, workdir and user follow docker\'s rules', { skip, concurrency: true }, () => {
  test('image ENTRYPOINT + CMD', async () => {
    assert.deepEqual(await lines(['cfg']), ['ep c1 c2']);
  });
  test('run arguments replace CMD, not ENTRYPOINT', async () => {
    assert.deepEqual(await lines(['cfg', 'x', 'y z']), ['ep x y z']);
  });
  test('--entrypoint replaces ENTRYPOINT and clears CMD', async () => {
    assert.deepEqual(await lines(['--entrypoint', '/bin/echo', 'cfg']), ['']);
    assert.deepEqual(await lines(['--entrypoint', 'echo', 'cfg', 'a', 'b']), ['a b']);
  });
  test('--entrypoint \'\' clears ENTRYPOINT: the arguments are the command; none at all is an error', async () => {
    assert.deepEqual(await lines(['--entrypoint', '', 'cfg', 'echo', 'plain']), ['plain']);
    oneLine(await hoist(['run', '--rm', '--entrypoint', '', 'cfg']), 125, /no command specified/);
    oneLine(await hoist(['run', '--rm', 'nocmd']), 125, /no command specified/);
  });
  test('-e overrides the image env, --env-file comes before -e, a bare -e K takes the host value', async () => {
    const file = path.join(tmp.dir, 'env-file');
    await writeFile(file, '# a comment\n\nBAR=from-file\nFOO=from-file\n  SPACED=kept  \nFROMHOST\n');
    const r = await hoist(['run', '--rm', '--entrypoint', '', '-e', 'FOO=cli', '--env-file', file, '-e', 'FROMHOST', '-e', 'NEW=1', 'cfg', 'env'],
      {});
    assert.equal(r.code, 0, show(r));
    const env = envOf(r.stdout.trimEnd().split('\n'));
    assert.equal(env.get('FOO'), 'cli');
    assert.equal(env.get('BAR'), 'from-file');
    assert.equal(env.get('SPACED'), 'kept  ');
    assert.equal(env.get('NEW'), '1');
    assert.equal(env.has('FROMHOST'), false, 'FROMHOST is unset on the host, so it stays unset');
    assert.equal(env.get('HOME'), '/home/app');
    assert.equal(env.get('PATH'), '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
    assert.match(env.get('HOSTNAME') ?? '', /^[0-9a-f]{12}$/);
    const unchanged = envOf(await lines(['--entrypoint', '', 'cfg', 'env']));
    assert.equal(unchanged.get('FOO'), 'img');
    assert.equal(unchanged.get('BAR'), 'img');
  });
  // Started as `node -- cmd/hoist.mjs` (as the bin's shebang does): Node reads --env-file anywhere in argv,
  // script arguments included (nodejs/node#54232), unless `--` ends its options.
  test('a missing --env-file: 125 and hoist\'s one line', async () => {
    oneLine(await hoist(['run', '--rm', '--env-file', path.join(tmp.dir, 'no-such-env-file'), 'cfg']), 125, /--env-file .*no-such-env-file: no such file/);
  });
  test('the image\'s WorkingDir, -w, and a relative one refused', async () => {
    assert.deepEqual(await lines(['--entrypoint', '', 'cfg', 'pwd']), ['/work']);
    assert.deepEqual(await lines(['--entrypoint', '', '-w', '/tmp', 'cfg', 'pwd']), ['/tmp']);
    assert.deepEqual(await lines(['-w', '/made/by/runtime', 'busybox', 'pwd']), ['/made/by/runtime']);
    oneLine(await hoist(['run', '--rm', '-w', 'rel', 'busybox', 'pwd']), 125, /-w rel: the working directory must be an absolute path/);
    oneLine(await hoist(['run', '--rm', 'badwd', 'pwd']), 125, /WorkingDir "rel\/dir"/);
  });
  test('the image\'s User, by name: its uid, gid, supplementary groups from /etc/group, HOME from passwd', async () => {
    assert.deepEqual(await lines(WHO), ['1000', '1000', '10 1000 2000 ', '/home/app', '/work']);
  });
  test('-u name, -u uid, -u uid:gid, -u name:group', async () => {
    assert.deepEqual(await lines(['-u', 'root', ...WHO]), ['0', '0', '0 ', '/root', '/work']);
    assert.deepEqual(await lines(['-u', '0', ...WHO]), ['0', '0', '0 ', '/root', '/work']);
    assert.deepEqual(await lines(['-u', '1000', ...WHO]), ['1000', '1000', '10 1000 2000 ', '/home/app', '/work']);
    // No passwd entry: the ids as given, HOME=/ (runc's default), no supplementary groups.
    assert.deepEqual(await lines(['-u', '1234:5678', ...WHO]), ['1234', '5678', '5678 ', '/', '/work']);
    // An explicit group replaces the primary group and drops the /etc/group memberships.
    assert.deepEqual(await lines(['-u', 'app:other', ...WHO]), ['1000', '3000', '3000 ', '/home/app', '/work']);
    assert.deepEqual(await lines(['-u', 'nobody:2000', ...WHO]), ['65534', '2000', '2000 ', '/nonexistent', '/work']);
  });
  test('an unknown user or group: 125 and one line', async () => {
    oneLine(await hoist(['run', '--rm', '-u', 'nosuch', 'cfg']), 125, /unable to find user nosuch: no matching entries in passwd file/);
    oneLine(await hoist(['run', '--rm', '-u', 'app:nogroup', 'cfg']), 125, /unable to find group nogroup: no matching entries in group file/);
    oneLine(await hoist(['run', '--rm', '-u', '-5', 'cfg']), 125, /uids and gids must be in range/);
  });
});

describe('bad input: one clear line and exit 125', { skip, concurrency: true }, () => {
  test('image missing with --pull never', async () => {
    oneLine(await hoist(['run', '--rm', '--pull', 'never', 'nosuch-image', 'true']), 125,
      /image "nosuch-image" is not in the local store and --pull never was given/);
  });
  test('runtime missing', async () => {
    oneLine(await hoist(['run', '--rm', '--runtime', '/nonexistent', 'busybox', 'true']), 125, /--runtime \/nonexistent: not found/);
  });
  test('-v with a relative container path, a named volume, an anonymous volume, a bad mode', async () => {
    oneLine(await hoist(['run', '--rm', '-v', `${tmp.dir}:rel`, 'busybox', 'true']), 125, /container path 'rel' must be absolute/);
    oneLine(await hoist(['run', '--rm', '-v', 'myvol:/data', 'busybox', 'true']), 125, /named volumes are not supported/);
    oneLine(await hoist(['run', '--rm', '-v', '/data', 'busybox', 'true']), 125, /anonymous volumes are not supported/);
    oneLine(await hoist(['run', '--rm', '-v', `${tmp.dir}:/data:rx`, 'busybox', 'true']), 125, /invalid mode 'rx'/);
    oneLine(await hoist(['run', '--rm', '-v', `${tmp.dir}/nosuch:/data`, 'busybox', 'true']), 125, /the host path .*\/nosuch does not exist/);
  });
  test('bad --network, --pull, --name', async () => {
    oneLine(await hoist(['run', '--rm', '--network', 'bridge', 'busybox', 'true']), 125, /--network bridge: not supported/);
    oneLine(await hoist(['run', '--rm', '--pull', 'sometimes', 'busybox', 'true']), 125, /--pull sometimes/);
    oneLine(await hoist(['run', '--rm', '--name', '-bad name', 'busybox', 'true']), 125, /--name "-bad name"/);
  });
});

describe('stdin, terminal and signals', { skip, concurrency: true }, () => {
  test('-i passes stdin; without it the container reads nothing', async () => {
    const r = await ok(['run', '--rm', '-i', 'busybox', 'sh', '-c', 'cat; echo done'], { input: 'line 1\nline 2\n' });
    assert.equal(r.stdout, 'line 1\nline 2\ndone\n');
    const n = await ok(['run', '--rm', 'busybox', 'sh', '-c', 'cat; echo done'], { input: 'ignored\n' });
    assert.equal(n.stdout, 'done\n');
  });
  test('-t gives the container a terminal (hoist itself run under script(1))', async () => {
    const cmd = [process.execPath, HOIST, 'run', '--rm', '-t', 'busybox', 'sh', '-c', 'test -t 0 && test -t 1 && tty && echo "TERM=$TERM"; exit 3']
      .map(shQuote).join(' ');
    const r = await runAs(user!, 'script', ['-qec', cmd, '/dev/null'], { env: { HOIST_ROOT: root } });
    assert.equal(r.code, 3, show(r));
    assert.match(r.stdout, /^\/dev\/pts\/\d+\r\nTERM=xterm\r\n$/);
    const plain = await ok(['run', '--rm', 'busybox', 'sh', '-c', 'tty || true']);
    assert.equal(plain.stdout, 'not a tty\n');
    // Without any terminal (setsid: no controlling terminal, whatever the test runner has).
    const none = await runAs(user!, 'setsid', ['-w', process.execPath, HOIST, 'run', '--rm', '-t', 'busybox', 'true'], { env: { HOIST_ROOT: root } });
    oneLine(none, 125, /-t: hoist is not running in a terminal/);
  });
  test('SIGTERM to hoist reaches the container', async () => {
    const bg = hoistInBackground(user!, root, home, ['run', '--rm', 'busybox', 'sh', '-c', 'trap "exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
    try {
      await bg.waitForStdout(/ready/);
      process.kill(await bg.hoistPid(), 'SIGTERM');
      const r = await bg.exit;
      assert.equal(r.code, 7, show(r));
    } finally {
      await bg.stop();
    }
  });
  test('a container does not outlive hoist: kill -9 of hoist ends it', async () => {
    const bg = hoistInBackground(user!, root, home, ['run', '--rm', 'busybox', 'sh', '-c', 'echo ready; exec sleep 4713']);
    try {
      await bg.waitForStdout(/ready/);
      assert.equal((await pidsWithArgv(['sleep', '4713'])).length, 1, 'the container\'s sleep is not visible from the host');
      process.kill(await bg.hoistPid(), 'SIGKILL');
      await bg.exit;
      let left: number[] = [];
      for (let i = 0; i < 50; i++) {
        left = await pidsWithArgv(['sleep', '4713']);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(left, [], 'the container kept running after hoist was killed');
      // Its files stay (nothing was left to remove them): ps -a shows it exited, and prune removes it.
      const list = JSON.parse((await ok(['ps', '-a', '--format', 'json'])).stdout) as { Id: string; State: string; Command: string[] }[];
      const killed = list.find((c) => c.Command.join(' ').includes('sleep 4713'));
      assert.ok(killed, `ps -a does not list the killed container:\n${JSON.stringify(list)}`);
      assert.equal(killed.State, 'exited');
      const pruned = await ok(['prune']);
      assert.match(pruned.stderr, /[1-9]\d* container\(s\) a killed run --rm left removed; /);
      await assert.rejects(stat(path.join(root, 'containers', killed.Id)), { code: 'ENOENT' });
    } finally {
      await bg.stop();
    }
  });
});

test('without --rm, ps -a lists the exited container with its exit code; rm removes it and its subuid-owned files', { skip }, async () => {
  const r = await hoist(['run', '--name', 'kept', 'busybox', 'sh', '-c',
    'echo x > /owned; chown 1000:1000 /owned; mkdir -p /d/e; echo y > /d/e/f; chown -R 1234:1234 /d; chmod 700 /d /d/e; exit 3']);
  assert.equal(r.code, 3, show(r));
  const list = JSON.parse((await ok(['ps', '-a', '--format', 'json'])).stdout) as { Id: string; Names: string[]; State: string; ExitCode: number; Command: string[] }[];
  const kept = list.find((c) => c.Names[0] === 'kept');
  assert.ok(kept, `ps -a does not list it:\n${JSON.stringify(list)}`);
  assert.equal(kept.State, 'exited');
  assert.equal(kept.ExitCode, 3);
  assert.equal(kept.Command[0], 'sh');
  assert.match((await ok(['ps', '-a'])).stdout, /Exited \(3\).* kept\n/);
  assert.ok(!(await ok(['ps'])).stdout.includes('kept'), 'ps without -a lists an exited container');

  // The container's upper dir holds files of subordinate ids (not the user's own).
  const dir = path.join(root, 'containers', kept.Id);
  const sub = (await stat(path.join(dir, 'upper', 'owned'))).uid;
  assert.notEqual(sub, hostIds(user!).uid);
  const dup = await hoist(['run', '--name', 'kept', 'busybox', 'true']);
  oneLine(dup, 125, /the container name "kept" is already in use/);

  const rm = await ok(['rm', 'kept']);
  assert.equal(rm.stdout, `${kept.Id}\n`);
  await assert.rejects(stat(dir), { code: 'ENOENT' });
  assert.ok(!(await ok(['ps', '-a'])).stdout.includes('kept'));
  oneLine(await hoist(['rm', 'kept']), 125, /no container named or with id "kept"/);
  await ok(['rm', '-f', 'kept']);
});

test('--rm leaves nothing behind: no container dirs, no runtime state, no mounts, no snapshot temp dirs', { skip }, async () => {
  // A store of its own, so the other cases' containers don't count.
  const own = path.join(tmp.dir, 'rm-store');
  const h = (args: string[]): Promise<RunResult> => hoistAs(user!, own, args);
  const copy = await h(['copy', '-q', `oci:${path.join(tmp.dir, 'images')}:busybox`, 'busybox']);
  assert.equal(copy.code, 0, show(copy));
  const runs = await Promise.all([
    h(['run', '--rm', 'busybox', 'sh', '-c', 'echo x > /f; chown 1000:1000 /f; mkdir -p /d/e; chown -R 1234 /d; chmod 700 /d /d/e']),
    h(['run', '--rm', 'busybox', 'sh', '-c', 'exit 42']),
    h(['run', '--rm', 'busybox', 'nosuchcmd']),
    h(['run', '--rm', '-u', 'nosuchuser', 'busybox', 'true']),
    h(['run', '--rm', '--entrypoint', '', 'busybox']),
  ]);
  assert.deepEqual(runs.map((r) => r.code), [0, 42, 127, 125, 125], runs.map(show).join('\n'));
  assert.deepEqual(await readdir(path.join(own, 'containers')), []);
  const state = path.join(own, 'run', `runc-${hostIds(user!).uid}`);
  assert.deepEqual(await readdir(state).catch(() => []), [], 'runc state left behind');
  assert.deepEqual((await readdir(path.join(own, 'snapshots'))).filter((n) => n.startsWith('.tmp-')), []);
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(tmp.dir));
  assert.deepEqual(mounts, []);
  assert.equal((await h(['ps', '-a', '-q'])).stdout, '');
});

describe('network, hostname, name', { skip, concurrency: true }, () => {
  test('--network none: only lo', async () => {
    const out = await lines(['--network', 'none', 'busybox', 'cat', '/proc/net/dev']);
    const ifaces = out.slice(2).map((l) => l.trim().split(':')[0]);
    assert.deepEqual(ifaces, ['lo']);
    // --net is the same flag.
    const short = await lines(['--net', 'none', 'busybox', 'cat', '/proc/net/dev']);
    assert.deepEqual(short.slice(2).map((l) => l.trim().split(':')[0]), ['lo']);
  });
  test('--network host (and the default): the host\'s interfaces', async () => {
    const hostIfaces = (await readFile('/proc/net/dev', 'utf8')).trimEnd().split('\n').slice(2).map((l) => l.trim().split(':')[0]).sort();
    assert.ok(hostIfaces.length > 1, 'the host has only lo: nothing to compare');
    for (const args of [['--network', 'host'], []]) {
      const out = await lines([...args, 'busybox', 'cat', '/proc/net/dev']);
      assert.deepEqual(out.slice(2).map((l) => l.trim().split(':')[0]).sort(), hostIfaces);
    }
  });
  test('--hostname sets the name, /etc/hostname and HOSTNAME; the default is the id\'s start', async () => {
    assert.deepEqual(await lines(['--hostname', 'box1', 'busybox', 'sh', '-c', 'hostname; cat /etc/hostname; echo $HOSTNAME; grep box1 /etc/hosts']),
      ['box1', 'box1', 'box1', '127.0.1.1\tbox1']);
    const r = await ok(['run', '--name', 'named1', 'busybox', 'hostname']);
    const rec = (JSON.parse((await ok(['ps', '-a', '--format', 'json'])).stdout) as { Id: string; Names: string[] }[]).find((c) => c.Names[0] === 'named1');
    assert.ok(rec, '--name not listed by ps -a');
    assert.equal(r.stdout, `${rec.Id.slice(0, 12)}\n`);
    await ok(['rm', 'named1']);
  });
});

test('hoist info --format json: runc, overlay with userxattr, the user\'s id ranges', { skip }, async () => {
  const info = JSON.parse((await ok(['info', '--format', 'json'])).stdout) as {
    user: { name: string; uid: number; root: boolean }; userns: string; rootfs: string;
    ociRuntime: { name: string; path: string; version: string } | null;
    idMappings: { uid: unknown; gid: unknown }; warnings: string[];
  };
  const { subordinateIds } = await import('../helpers/rootless.ts');
  const sub = subordinateIds(user!)!;
  assert.equal(info.user.name, user);
  assert.equal(info.user.uid, hostIds(user!).uid);
  assert.equal(info.user.root, false);
  assert.equal(info.userns, 'auto');
  assert.equal(info.ociRuntime?.name, 'runc');
  assert.match(info.ociRuntime?.path ?? '', /\/runc$/);
  assert.match(info.ociRuntime?.version ?? '', /^runc version \d/);
  assert.equal(info.rootfs, 'overlay (userxattr)');
  assert.deepEqual(info.idMappings.uid, { containerStart: 1, hostStart: sub.uid.start, size: sub.uid.count });
  assert.deepEqual(info.idMappings.gid, { containerStart: 1, hostStart: sub.gid.start, size: sub.gid.count });
  assert.deepEqual(info.warnings, []);
});
