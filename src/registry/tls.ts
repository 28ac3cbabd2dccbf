/**
 * TLS material for a registry, laid out like containers' certs.d: `*.crt` are extra CA roots (added to the
 * system's), `NAME.cert` + `NAME.key` a client certificate for mutual TLS.
 */
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { HoistError, isErrno } from '../errors.ts';

export interface TlsMaterial {
  /** System roots plus the directory's CAs; undefined when there are no extra CAs (use Node's defaults). */
  ca?: string[];
  cert?: string;
  key?: string;
}

/** Where containers tools look for `HOST[:PORT]` when no --cert-dir is given, most specific first. */
export function defaultCertDirs(host: string, home: string = os.homedir()): string[] {
  return [
    path.join(home, '.config', 'containers', 'certs.d', host),
    path.join('/etc/containers/certs.d', host),
    path.join('/etc/docker/certs.d', host),
  ];
}

/** Reads one certs.d-style directory. `explicit`: the user named it, so a missing directory is an error. */
export async function loadCertDir(dir: string, explicit: boolean): Promise<TlsMaterial | undefined> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (e) {
    if (!explicit && (isErrno(e, 'ENOENT') || isErrno(e, 'ENOTDIR') || isErrno(e, 'EACCES'))) return undefined;
    if (isErrno(e, 'ENOENT')) throw new HoistError('CERT_DIR', `--cert-dir ${dir}: no such directory; pass the directory holding ca.crt (and client.cert/client.key)`);
    throw new HoistError('CERT_DIR', `--cert-dir ${dir}: cannot read it (${(e as Error).message})`, { cause: e });
  }
  const out: TlsMaterial = {};
  const cas: string[] = [];
  for (const n of names) {
    const full = path.join(dir, n);
    if (n.endsWith('.crt')) {
      cas.push(await readFile(full, 'utf8'));
    } else if (n.endsWith('.cert') && out.cert === undefined) {
      const keyName = `${n.slice(0, -'.cert'.length)}.key`;
      if (!names.includes(keyName)) {
        throw new HoistError('CERT_DIR', `${full}: client certificate without its key ${keyName} in ${dir}; add the key or remove the certificate`);
      }
      out.cert = await readFile(full, 'utf8');
      out.key = await readFile(path.join(dir, keyName), 'utf8');
    } else if (n.endsWith('.key')) {
      const certName = `${n.slice(0, -'.key'.length)}.cert`;
      if (!names.includes(certName)) {
        throw new HoistError('CERT_DIR', `${full}: client key without its certificate ${certName} in ${dir}; add the certificate or remove the key`);
      }
    }
  }
  if (cas.length) out.ca = [...rootCertificates, ...cas];
  return out;
}

/** The material for `host`: the explicit directory, else the first default certs.d directory that exists. */
export async function tlsMaterialFor(host: string, certDir: string | undefined): Promise<TlsMaterial> {
  if (certDir !== undefined) return (await loadCertDir(certDir, true)) ?? {};
  for (const d of defaultCertDirs(host)) {
    const m = await loadCertDir(d, false);
    if (m) return m;
  }
  return {};
}
