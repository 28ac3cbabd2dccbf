/**
 * An HTTP proxy on 127.0.0.1 in front of a real registry that misbehaves on purpose, rule by rule: answer a
 * status itself (500/503 once, 429 with Retry-After), cut the connection after N response-body bytes, corrupt
 * a response byte, trickle the body slowly (bounded), drop Range headers, or cut a request body mid-upload. Requests keep their Host header, so the registry's
 * Location URLs point back at the proxy. Every request is recorded (method, path, status, fault).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultAction =
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'corrupt'; atByte: number }
  | { kind: 'trickle'; chunkBytes: number; delayMs: number; maxMs?: number }
  /** Forward without the Range header: a server that ignores Range and answers 200 with the whole body. */
  | { kind: 'ignore-range' }
  /** Forward only the first N bytes of the request body, then drop both connections (an upload cut mid-way). */
  | { kind: 'cut-request'; afterBytes: number };

export interface FaultRule {
  /** Method to match (any when absent). */
  method?: string;
  /** Matched against the path with query: a RegExp, or a substring. */
  path: RegExp | string;
  /** Only requests carrying this header (lower-case name) match; `true` = present, `false` = absent. */
  header?: { name: string; present: boolean };
  /** How many matching requests the rule applies to (default 1). */
  times?: number;
  /** Matching requests to let through untouched before the rule applies (default 0). */
  skip?: number;
  action: FaultAction;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  status: number;
  /** The fault applied, if any. */
  fault?: FaultAction['kind'];
  range?: string;
  /** Whether an Authorization header came along (its value is never recorded). */
  authorization: boolean;
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  url: string;
  requests: ProxiedRequest[];
  addRule(rule: FaultRule): void;
  clearRules(): void;
  /** Requests seen with this method whose path matches. */
  count(method: string, path: RegExp | string): number;
  stop(): Promise<void>;
}

function matches(path: string, p: RegExp | string): boolean {
  return typeof p === 'string' ? path.includes(p) : p.test(path);
}

/** `upstream`: `http://127.0.0.1:PORT` of the real registry (plain http). */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const up = new URL(upstream);
  const agent = new http.Agent({ keepAlive: true });
  const rules: (FaultRule & { left: number; skipLeft: number })[] = [];
  const requests: ProxiedRequest[] = [];

  const take = (req: http.IncomingMessage): FaultAction | undefined => {
    const path = req.url ?? '/';
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.method && r.method !== req.method) continue;
      if (!matches(path, r.path)) continue;
      if (r.header && (req.headers[r.header.name] !== undefined) !== r.header.present) continue;
      if (r.skipLeft > 0) {
        r.skipLeft--;
        continue;
      }
      r.left--;
      return r.action;
    }
    return undefined;
  };

  const server = http.createServer((req, res) => {
    const action = take(req);
    const rec: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', status: 0, authorization: req.headers.authorization !== undefined };
    if (req.headers.range !== undefined) rec.range = req.headers.range;
    if (action) rec.fault = action.kind;
    requests.push(rec);

    if (action?.kind === 'status') {
      // Read the request body first so the client is not cut off mid-send.
      req.resume();
      req.on('end', () => {
        rec.status = action.status;
        const body = action.body ?? JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `injected ${action.status}` }] });
        res.writeHead(action.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...action.headers });
        res.end(body);
      });
      return;
    }

    const headers = { ...req.headers };
    if (action?.kind === 'ignore-range') delete headers.range;
    const out = http.request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers, agent },
      (ures) => {
        rec.status = ures.statusCode ?? 0;
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
        if (!action || action.kind === 'ignore-range' || action.kind === 'cut-request') {
          ures.pipe(res);
          return;
        }
        let seen = 0;
        if (action.kind === 'cut') {
          if (action.afterBytes <= 0) {
            res.flushHeaders();
            setImmediate(() => {
              res.socket?.destroy();
              ures.destroy();
            });
            return;
          }
          ures.on('data', (c: Buffer) => {
            if (seen >= action.afterBytes) return;
            const room = action.afterBytes - seen;
            seen += c.length;
            if (c.length < room) {
              res.write(c);
              return;
            }
            res.write(c.subarray(0, room), () => {
              // Drop the connection mid-body, as a broken network would.
              res.socket?.destroy();
              ures.destroy();
            });
          });
          return;
        }
        if (action.kind === 'corrupt') {
          ures.on('data', (c: Buffer) => {
            const i = action.atByte - seen;
            seen += c.length;
            if (i >= 0 && i < c.length) {
              c = Buffer.from(c);
              c[i] = c[i]! ^ 0xff;
            }
            res.write(c);
          });
          ures.on('end', () => res.end());
          return;
        }
        // trickle: small pieces with pauses, until maxMs has passed; then the rest at once.
        const started = Date.now();
        const maxMs = action.maxMs ?? 2000;
        ures.pause();
        const pump = async () => {
          for await (const chunk of ures) {
            let c = chunk as Buffer;
            while (c.length > 0) {
              const slow = Date.now() - started < maxMs;
              const n = slow ? Math.min(action.chunkBytes, c.length) : c.length;
              if (!res.write(c.subarray(0, n))) await new Promise((r) => res.once('drain', r));
              c = c.subarray(n);
              if (slow) await new Promise((r) => setTimeout(r, action.delayMs));
            }
          }
          res.end();
        };
        pump().catch(() => res.destroy());
      },
    );
    out.on('error', () => {
      if (!res.headersSent) {
        rec.status = 502;
        res.writeHead(502);
      }
      res.destroy();
    });
    if (action?.kind === 'cut-request') {
      let seen = 0;
      req.on('data', (c: Buffer) => {
        if (seen >= action.afterBytes) return;
        const room = action.afterBytes - seen;
        seen += c.length;
        if (c.length < room) {
          out.write(c);
          return;
        }
        out.write(c.subarray(0, room), () => {
          // Give the upstream a moment to take the bytes in, as a real cut would have let it.
          setTimeout(() => {
            out.destroy();
            req.socket.destroy();
          }, 50);
        });
      });
      return;
    }
    req.pipe(out);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    addRule(rule: FaultRule) {
      rules.push({ ...rule, left: rule.times ?? 1, skipLeft: rule.skip ?? 0 });
    },
    clearRules() {
      rules.length = 0;
    },
    count(method: string, path: RegExp | string) {
      return requests.filter((r) => r.method === method && matches(r.path, path)).length;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
