/** Small stream helpers shared by transports and commands. */
import type { Readable } from 'node:stream';

/** Reads a whole (small) stream into memory: manifests and configs only, never layers. */
export async function readAll(stream: Readable, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > limit) {
      stream.destroy();
      throw new Error(`stream larger than ${limit} bytes`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}
