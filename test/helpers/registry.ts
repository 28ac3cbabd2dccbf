/**
 * A real registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with a random free port,
 * its own config and a temp storage directory. Optional htpasswd (bcrypt via `htpasswd` from apache2-utils) or
 * token auth (test/helpers/token-server.ts), and TLS with a throw-away CA (openssl CLI), optionally mutual TLS.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTokenServer, type TokenServer } from './token-server.ts';

const run = promisify(execFile);

export const REGISTRY_BIN = '/usr/bin/docker-registry';

export interface RegistryUser {
  username: string;
  password: string;
}

export interface StartRegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  tls?: boolean;
  /** Require a client certificate signed by the test CA (implies tls). */
  mtls?: boolean;
  /** Token lifetime in seconds for auth: 'token'. */
  tokenExpiresIn?: number;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  /** `http(s)://127.0.0.1:PORT` */
  url: string;
  /** Temp directory holding config, storage, certificates. */
  dir: string;
  /** Users that can log in (htpasswd and token setups); the first is the usual one. */
  users: RegistryUser[];
  tokenServer?: TokenServer;
  /** With tls: a certs.d-style directory holding `ca.crt` (and `client.cert`/`client.key` with mtls). */
  certDir?: string;
  /** With tls: the CA certificate (PEM). */
  caPem?: string;
  /** The registry's own log, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

/** A CA, a server certificate for 127.0.0.1/localhost, and a client certificate, all P-256. */
async function makeTlsFiles(dir: string): Promise<{ caCrt: string; serverCrt: string; serverKey: string; clientCert: string; clientKey: string }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=hoist test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await writeFile(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  await openssl(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  await openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext'], dir);
  await writeFile(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
  await openssl(['req', ...ec, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=hoist test client'], dir);
  await openssl(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2', '-extfile', 'client.ext'], dir);
  return {
    caCrt: path.join(dir, 'ca.crt'),
    serverCrt: path.join(dir, 'server.crt'),
    serverKey: path.join(dir, 'server.key'),
    clientCert: path.join(dir, 'client.crt'),
    clientKey: path.join(dir, 'client.key'),
  };
}

async function htpasswdLine(user: RegistryUser): Promise<string> {
  try {
    const { stdout } = await run('htpasswd', ['-Bbn', user.username, user.password]);
    return stdout.trim();
  } catch (e) {
    throw new Error(`htpasswd (apache2-utils) is needed for the htpasswd registry setup: ${(e as Error).message}`);
  }
}

/** Polls `/v2/` until the registry answers (any HTTP status) or the process dies. */
async function waitReady(url: string, tlsOpts: { ca?: string; cert?: Buffer; key?: Buffer }, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`docker-registry exited early:\n${log().slice(-4000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const mod = url.startsWith('https:') ? https : http;
      const req = mod.get(`${url}/v2/`, { ...tlsOpts, rejectUnauthorized: false, agent: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s:\n${log().slice(-4000)}`);
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const auth = opts.auth ?? 'none';
  const tls = opts.tls === true || opts.mtls === true;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hoist-registry-'));
  try {
    const users: RegistryUser[] = auth === 'none' ? [] : [
      { username: 'alice', password: `pw-${randomBytes(6).toString('hex')}` },
      { username: 'bob', password: `pw-${randomBytes(6).toString('hex')}` },
    ];
    let tokenServer: TokenServer | undefined;
    const lines = [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${JSON.stringify(path.join(dir, 'data'))}`,
      '  delete:',
      '    enabled: true',
      '  maintenance:',
      '    uploadpurging:',
      '      enabled: false',
      'http:',
      '  addr: ADDR',
      `  secret: ${randomBytes(16).toString('hex')}`,
    ];
    let certDir: string | undefined;
    let caPem: string | undefined;
    const probeTls: { ca?: string; cert?: Buffer; key?: Buffer } = {};
    if (tls) {
      const tlsDir = path.join(dir, 'tls');
      await mkdir(tlsDir);
      const f = await makeTlsFiles(tlsDir);
      lines.push('  tls:', `    certificate: ${JSON.stringify(f.serverCrt)}`, `    key: ${JSON.stringify(f.serverKey)}`);
      if (opts.mtls) lines.push('    clientcas:', `      - ${JSON.stringify(f.caCrt)}`);
      certDir = path.join(dir, 'certs.d');
      await mkdir(certDir);
      caPem = await readFile(f.caCrt, 'utf8');
      await writeFile(path.join(certDir, 'ca.crt'), caPem);
      probeTls.ca = caPem;
      if (opts.mtls) {
        probeTls.cert = await readFile(f.clientCert);
        probeTls.key = await readFile(f.clientKey);
        await writeFile(path.join(certDir, 'client.cert'), probeTls.cert);
        await writeFile(path.join(certDir, 'client.key'), probeTls.key, { mode: 0o600 });
      }
    }
    if (auth === 'htpasswd') {
      const file = path.join(dir, 'htpasswd');
      await writeFile(file, `${(await Promise.all(users.map(htpasswdLine))).join('\n')}\n`);
      lines.push('auth:', '  htpasswd:', '    realm: hoist-test', `    path: ${JSON.stringify(file)}`);
    } else if (auth === 'token') {
      tokenServer = await startTokenServer(dir, {
        users: Object.fromEntries(users.map((u) => [u.username, u.password])),
        identityTokens: { [`idtoken-${users[0]!.password}`]: users[0]!.username },
        expiresIn: opts.tokenExpiresIn,
      });
      lines.push('auth:', '  token:', `    realm: ${JSON.stringify(tokenServer.realm)}`, `    service: ${tokenServer.service}`,
        `    issuer: ${tokenServer.issuer}`, `    rootcertbundle: ${JSON.stringify(tokenServer.certFile)}`);
    }

    // The port is free when probed but could be taken before the registry binds it: try a few.
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const host = `127.0.0.1:${port}`;
      const configFile = path.join(dir, 'config.yml');
      await writeFile(configFile, `${lines.join('\n').replace('ADDR', host)}\n`);
      let output = '';
      const child = spawn(REGISTRY_BIN, ['serve', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } });
      const collect = (b: Buffer) => {
        output = (output + b.toString('utf8')).slice(-64 * 1024);
      };
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      const log = () => output;
      const url = `${tls ? 'https' : 'http'}://${host}`;
      try {
        await waitReady(url, probeTls, child, log);
      } catch (e) {
        lastErr = e;
        child.kill('SIGKILL');
        continue;
      }
      // If this test process dies without stop() (killed on a timeout), nothing else would end the registry:
      // a detached watchdog polls our pid and then stops it and removes the directory.
      const watchdog = spawn('sh', ['-c', 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill "$2" 2>/dev/null; rm -rf "$3"', 'watchdog', String(process.pid), String(child.pid), dir], { detached: true, stdio: 'ignore' });
      watchdog.unref();
      const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      const ts = tokenServer;
      const result: TestRegistry = {
        host, url, dir, users, log,
        async stop() {
          watchdog.kill();
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exited;
          clearTimeout(timer);
          await ts?.stop();
          await rm(dir, { recursive: true, force: true });
        },
      };
      if (ts) result.tokenServer = ts;
      if (certDir !== undefined) result.certDir = certDir;
      if (caPem !== undefined) result.caPem = caPem;
      return result;
    }
    await tokenServer?.stop();
    throw lastErr;
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
