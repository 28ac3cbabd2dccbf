/**
 * Container records: `<store>/containers/<id>/hoist.json` beside the container's files (bundle, upper dir…), so that
 * `hoist ps -a` can list them and `hoist rm` remove them. Written by the outer hoist process (the host user); the
 * files the container wrote are removed from inside the user namespace (they belong to subordinate ids).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HoistError } from '../errors.ts';
import { pidAlive } from '../store/lock.ts';

export interface ContainerRecord {
  id: string;
  name: string;
  /** The image as the user named it, and the manifest digest that ran. */
  image: string;
  imageDigest: string;
  command: string[];
  /** ISO time. */
  created: string;
  /** The hoist process that runs it; alive means the container is running. */
  pid?: number;
  state: 'created' | 'running' | 'exited';
  exitCode?: number;
  finishedAt?: string;
  /** `run --rm`: its files go when it ends; left behind only if hoist was killed, then `hoist prune` removes them. */
  autoRemove?: boolean;
}

const RECORD = 'hoist.json';

/** A container id: 64 hex digits, as docker and podman make them. */
export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

export class Containers {
  readonly dir: string;

  constructor(storeRoot: string) {
    this.dir = path.join(storeRoot, 'containers');
  }

  containerDir(id: string): string {
    return path.join(this.dir, id);
  }

  /** A new record (id from newContainerId()) with a unique name (`--name`, else a generated one). */
  create(rec: Omit<ContainerRecord, 'name' | 'created' | 'state'> & { name?: string }): ContainerRecord {
    const existing = this.list();
    if (rec.name !== undefined) {
      if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(rec.name)) {
        throw new HoistError('BAD_NAME', `--name ${JSON.stringify(rec.name)}: names are letters, digits, _ . - (not first); pick another name`, { exitCode: 125 });
      }
      const clash = existing.find((c) => c.name === rec.name);
      if (clash) {
        throw new HoistError('NAME_IN_USE', `the container name "${rec.name}" is already in use by ${clash.id.slice(0, 12)}; remove it with: hoist rm ${rec.name}`, { exitCode: 125 });
      }
    }
    const names = new Set(existing.map((c) => c.name));
    let name = rec.name;
    while (name === undefined || names.has(name)) name = generateName();
    const full: ContainerRecord = { ...rec, name, created: new Date().toISOString(), state: 'created' };
    mkdirSync(this.containerDir(full.id), { recursive: true, mode: 0o700 });
    this.write(full);
    return full;
  }

  write(rec: ContainerRecord): void {
    const file = path.join(this.containerDir(rec.id), RECORD);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(rec, null, 2));
    renameSync(tmp, file);
  }

  /** Every record, newest first; a container whose hoist process is gone without a word counts as exited. */
  list(): ContainerRecord[] {
    let ids: string[];
    try {
      ids = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: ContainerRecord[] = [];
    for (const id of ids) {
      const rec = this.read(id);
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => b.created.localeCompare(a.created));
  }

  read(id: string): ContainerRecord | undefined {
    let rec: ContainerRecord;
    try {
      rec = JSON.parse(readFileSync(path.join(this.containerDir(id), RECORD), 'utf8')) as ContainerRecord;
    } catch {
      return undefined;
    }
    if (rec.state === 'running' && (rec.pid === undefined || !pidAlive(rec.pid))) rec.state = 'exited';
    return rec;
  }

  /** By full id, unique id prefix or name. */
  find(idOrName: string): ContainerRecord {
    const all = this.list();
    const hit = all.find((c) => c.id === idOrName || c.name === idOrName)
      ?? onlyOne(all.filter((c) => idOrName.length >= 3 && c.id.startsWith(idOrName)), idOrName);
    if (!hit) throw new HoistError('NOT_FOUND', `no container named or with id "${idOrName}"; list them with: hoist ps -a`, { exitCode: 125 });
    return hit;
  }
}

function onlyOne(list: ContainerRecord[], what: string): ContainerRecord | undefined {
  if (list.length > 1) throw new HoistError('AMBIGUOUS', `container id prefix "${what}" matches ${list.length} containers; give more of the id`, { exitCode: 125 });
  return list[0];
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'fond', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'proud', 'quiet', 'sharp', 'tender', 'vivid', 'witty', 'zen'];
const NOUNS = ['babbage', 'curie', 'darwin', 'euler', 'fermi', 'gauss', 'hopper', 'kepler', 'lovelace', 'meitner', 'noether', 'pascal', 'ritchie', 'shannon', 'turing', 'wozniak'];

function generateName(): string {
  const [a, b] = randomBytes(2);
  return `${ADJECTIVES[a! % ADJECTIVES.length]}_${NOUNS[b! % NOUNS.length]}`;
}
