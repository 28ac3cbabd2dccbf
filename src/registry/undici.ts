/**
 * The part of undici the registry client uses: a keep-alive Agent and its request() API.
 *
 * Why not `import { Agent, request } from 'undici'`: the package index also loads fetch, WebSocket, EventSource,
 * caches and mocks — about 60 ms of startup here, twice skopeo's whole `inspect`. Agent plus the request API
 * is about 20 ms. The deep paths are undici 7's layout; if a release moves them, fall back to the index.
 */
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

function load(): { Agent: typeof Undici.Agent } {
  try {
    const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
    const Dispatcher = require('undici/lib/dispatcher/dispatcher.js') as { prototype: object };
    const api = require('undici/lib/api/index.js') as object;
    // What undici's index does to give every dispatcher request(), stream(), pipeline()…
    if (!('request' in Dispatcher.prototype)) Object.assign(Dispatcher.prototype, api);
    return { Agent };
  } catch {
    return { Agent: (require('undici') as typeof Undici).Agent };
  }
}

export const { Agent } = load();
export type Agent = Undici.Agent;
export type Dispatcher = Undici.Dispatcher;
export type ResponseBody = Undici.Dispatcher.ResponseData['body'];

/** undici's top-level request(url, { dispatcher, … }), on an explicit dispatcher. */
export function request(
  url: URL,
  opts: { dispatcher: Undici.Dispatcher; method: Undici.Dispatcher.HttpMethod; headers: Record<string, string | undefined>; body: Buffer | string | Readable | null },
): Promise<Undici.Dispatcher.ResponseData> {
  return opts.dispatcher.request({
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: opts.method,
    headers: opts.headers,
    body: opts.body,
  });
}
