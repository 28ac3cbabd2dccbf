/**
 * Blob download that survives dropped connections: the bytes already passed on are not fetched again when the
 * server honours Range (206); otherwise the blob is fetched anew and the bytes already passed on are skipped.
 * Everything flows through verifyStream, so the consumer sees an error instead of bad bytes.
 */
import { pipeline, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Descriptor } from '../oci/types.ts';
import { verifyStream } from '../oci/digest.ts';
import { HoistError } from '../errors.ts';
import { networkError } from './errors.ts';
import { header, type HttpRequest, type HttpResponse, type RegistryHttp } from './http.ts';
import { backoffDelay, isTransientNetworkError } from './retry.ts';

/** However often progress is made, a download stops resuming after this many interruptions. */
const MAX_RESUMES = 50;

/** `bytes 100-199/1000` → 100 */
function contentRangeStart(v: string | undefined): number | undefined {
  const m = v === undefined ? null : /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/.exec(v.trim());
  return m ? Number(m[1]) : undefined;
}

export async function openBlob(http: RegistryHttp, req: Omit<HttpRequest, 'method' | 'expect'>, desc: Descriptor): Promise<Readable> {
  const get = (extra: Record<string, string>, expect: number[]) =>
    http.request({ ...req, method: 'GET', headers: { ...req.headers, ...extra }, expect });
  const first = await get({}, [200]);
  const policy = http.retryPolicy;

  async function* bytes(): AsyncGenerator<Buffer> {
    let res: HttpResponse = first;
    let reached = 0; // bytes passed on so far
    let skip = 0; // bytes of the current response already passed on (a restart without Range)
    let failuresWithoutProgress = 0;
    let resumes = 0;
    try {
      while (true) {
        const before = reached;
        let failure: unknown;
        try {
          for await (const chunk of res.body) {
            let b = chunk as Buffer;
            if (skip > 0) {
              if (b.length <= skip) {
                skip -= b.length;
                continue;
              }
              b = b.subarray(skip);
              skip = 0;
            }
            reached += b.length;
            yield b;
          }
          // A clean end short of the declared size is a cut too (chunked encoding hides it from the parser).
          if (desc.size < 0 || reached >= desc.size) return;
          failure = new HoistError('NETWORK', `${req.what}: connection ended after ${reached} of ${desc.size} bytes`);
        } catch (e) {
          if (!isTransientNetworkError(e)) throw e instanceof HoistError ? e : networkError(http.host, req.what, e);
          failure = e;
        }
        failuresWithoutProgress = reached > before ? 0 : failuresWithoutProgress + 1;
        resumes++;
        if (failuresWithoutProgress > policy.times || resumes > MAX_RESUMES) {
          throw failure instanceof HoistError ? failure : networkError(http.host, req.what, failure);
        }
        res.body.destroy();
        await sleep(backoffDelay(Math.max(0, failuresWithoutProgress - 1), policy));
        res = await get({ range: `bytes=${reached}-` }, [200, 206]);
        if (res.status === 206 && contentRangeStart(header(res.headers, 'content-range')) !== reached) {
          // A range we did not ask for: start over from the beginning instead of guessing.
          res.body.destroy();
          res = await get({}, [200]);
        }
        skip = res.status === 206 ? 0 : reached;
      }
    } finally {
      res.body.destroy();
    }
  }

  const verified = verifyStream(desc.digest, desc.size >= 0 ? desc.size : undefined, req.what);
  pipeline(Readable.from(bytes(), { objectMode: false }), verified, () => {
    // Errors reach the consumer through `verified`, which pipeline destroys with them.
  });
  return verified;
}
