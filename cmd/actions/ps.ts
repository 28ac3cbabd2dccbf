/** `hoist ps [-a]` — the containers in the store, like podman ps. */
import type { GlobalOptions } from '../main.ts';
import { storeRoot } from '../../src/store/root.ts';
import { Containers, type ContainerRecord } from '../../src/runtime/containers.ts';

interface PsFlags {
  all?: boolean;
  quiet?: boolean;
  trunc?: boolean;
  format: string;
}

export default async function ps(g: GlobalOptions, flags: PsFlags): Promise<number> {
  const list = new Containers(storeRoot(g.root)).list().filter((c) => flags.all || c.state === 'running');
  const id = (c: ContainerRecord) => (flags.trunc === false ? c.id : c.id.slice(0, 12));
  if (flags.quiet) {
    for (const c of list) process.stdout.write(`${id(c)}\n`);
    return 0;
  }
  if (flags.format === 'json') {
    process.stdout.write(JSON.stringify(list.map((c) => ({
      Id: c.id, Names: [c.name], Image: c.image, ImageID: c.imageDigest, Command: c.command, Created: c.created,
      State: c.state, ExitCode: c.exitCode ?? null, Exited: c.state === 'exited', FinishedAt: c.finishedAt ?? null,
    })), null, 2) + '\n');
    return 0;
  }
  const rows = [['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'NAMES']];
  for (const c of list) {
    const cmd = c.command.join(' ');
    rows.push([id(c), c.image, flags.trunc === false ? cmd : cmd.length > 20 ? `${cmd.slice(0, 17)}...` : cmd, ago(c.created), status(c), c.name]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
  return 0;
}

function status(c: ContainerRecord): string {
  if (c.state === 'running') return `Up ${ago(c.created).replace(/ ago$/, '')}`;
  if (c.state === 'created') return 'Created';
  return c.exitCode === undefined ? 'Exited' : `Exited (${c.exitCode}) ${c.finishedAt ? ago(c.finishedAt) : ''}`.trimEnd();
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} seconds ago`;
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}
