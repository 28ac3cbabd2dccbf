/**
 * When and how long to wait before trying a registry request again.
 * Exponential backoff with jitter for connection errors and 5xx; 429 honours Retry-After.
 * Callers decide what is replayable: this module never re-sends anything by itself.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryPolicy {
  /** Retries after the first attempt (so `times + 1` attempts in all). */
  times: number;
  /** Base delay; attempt n waits about delayMs * 2^n. */
  delayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { times: 3, delayMs: 500 };

/** A server asking us to wait longer than this is not waited for that long: the retry budget stays bounded. */
export const MAX_RETRY_AFTER_MS = 60_000;
const MAX_BACKOFF_MS = 30_000;

/** Delay before retry number `attempt` (0-based): exponential, with "equal jitter" so clients spread out. */
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, policy.delayMs * 2 ** attempt);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Retry-After as delta-seconds or an HTTP date → milliseconds (capped); undefined when absent or unparsable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  let ms: number;
  if (/^\d+$/.test(v)) {
    ms = Number(v) * 1000;
  } else {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = t - now;
  }
  return Math.max(0, Math.min(MAX_RETRY_AFTER_MS, ms));
}

/** HTTP statuses worth another try: the server is overloaded or failed transiently. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
]);

/** Errors (walking `cause`) that a fresh connection may cure. DNS "no such host" and TLS verification are not. */
export function isTransientNetworkError(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c !== null && typeof c === 'object' && depth < 5; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
    if ((c as { message?: unknown }).message === 'terminated') return true;
  }
  return false;
}

export type RetryDecision = { retry: false } | { retry: true; delayMs?: number };

/**
 * Runs `attempt` until it succeeds, `classify` says no, or the policy is spent.
 * `classify` sees the failure and may ask for a specific delay (Retry-After).
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  attempt: (n: number) => Promise<T>,
  classify: (e: unknown) => RetryDecision,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      if (n >= policy.times) throw e;
      const d = classify(e);
      if (!d.retry) throw e;
      await sleep(d.delayMs ?? backoffDelay(n, policy));
    }
  }
}
