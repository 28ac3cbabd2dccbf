/**
 * The OCI bundle of a container: config.json (the runtime spec, from the request and the user and executable checked
 * against the root filesystem) and the /etc files bind-mounted into it. Written by the namespace helper after it
 * mounted the root, or by the outer process over the layer snapshots (fast-run.ts); both check the same things and
 * fail with the same lines and exit codes.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HoistError } from '../errors.ts';
import { lookPath } from './lookpath.ts';
import { resolveUser } from './passwd.ts';
import { EXIT_CANNOT_EXECUTE, EXIT_HOIST_FAILED, EXIT_NOT_FOUND, type InnerRequest } from './request.ts';
import type { RootFiles } from './root-files.ts';
import { withHome } from './run-config.ts';
import { makeRuntimeSpec, type OciRuntimeSpec } from './spec.ts';

/**
 * Resolves the user and finds the command in `root` (the container's files), then writes the bundle into the
 * container's directory with `rootfs` as its root path. Gives the spec.
 */
export function writeBundle(req: InnerRequest, root: RootFiles, rootfs: string): OciRuntimeSpec {
  const dir = req.containerDir;
  const user = resolveUser(root, req.process.user);
  const env = withHome(req.process.env, user.home);
  const cmd = req.process.args[0];
  if (cmd === undefined) throw new HoistError('NO_COMMAND', 'no command specified', { exitCode: EXIT_HOIST_FAILED });
  const found = lookPath(root, cmd, env, req.process.cwd);
  if (found.kind === 'not-found') {
    const how = cmd.includes('/') ? 'no such file or directory' : 'executable file not found in $PATH';
    throw new HoistError('NOT_FOUND', `${cmd}: ${how} in the image; check the command, the image's PATH and the entrypoint`,
      { exitCode: EXIT_NOT_FOUND });
  }
  if (found.kind === 'not-executable') {
    throw new HoistError('CANNOT_EXECUTE', `${cmd}: permission denied (${found.path} is not an executable file)`,
      { exitCode: EXIT_CANNOT_EXECUTE });
  }
  const etc = writeEtcFiles(dir, req);
  const spec = makeRuntimeSpec({
    rootfs, args: req.process.args, env, cwd: req.process.cwd, uid: user.uid, gid: user.gid,
    additionalGids: user.additionalGids, terminal: req.process.terminal, hostname: req.process.hostname,
    network: req.network, rootless: req.rootless, mounts: req.mounts, etc,
  });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec));
  return spec;
}

/** /etc/hosts, /etc/resolv.conf and /etc/hostname for the container, bind-mounted by the spec (as podman does). */
function writeEtcFiles(dir: string, req: InnerRequest): { hosts: string; resolvConf: string; hostname: string } {
  const etc = path.join(dir, 'etc');
  mkdirSync(etc, { recursive: true });
  const name = req.process.hostname;
  const hostHosts = req.network === 'host' ? readOr('/etc/hosts', '') : '';
  const hosts = (hostHosts || '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n')
    + (hostHosts.endsWith('\n') || hostHosts === '' ? '' : '\n') + `127.0.1.1\t${name}\n`;
  const files = { hosts: path.join(etc, 'hosts'), resolvConf: path.join(etc, 'resolv.conf'), hostname: path.join(etc, 'hostname') };
  writeFileSync(files.hosts, hosts);
  writeFileSync(files.resolvConf, readOr('/etc/resolv.conf', ''));
  writeFileSync(files.hostname, `${name}\n`);
  return files;
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}
