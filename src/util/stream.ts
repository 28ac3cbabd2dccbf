/** Small stream helpers shared by transports and commands. */
import type { Readable } from 'node:stream';

/**
 * Reads a whole (small) stream into memory: manifests, configs, HTTP bodies, never layers. Past `limit` bytes it
 * stops reading and throws `onTooLarge()`'s error.
 */
export async function readAll(
  stream: Readable,
  limit = 16 * 1024 * 1024,
  onTooLarge: () => Error = () => new Error(`stream larger than ${limit} bytes`),
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > limit) {
      stream.destroy();
      throw onTooLarge();
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, n);
}
