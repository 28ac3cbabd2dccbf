/**
 * One readable into two consumers at the pace of the slower: the returned stream (the layer being stored) and a
 * side writable (a helper unpacking the same tar). The side is best effort: when it fails or closes early it is
 * dropped and the main stream goes on alone; a failure of the source or of the main consumer ends both.
 */
import { PassThrough, type Readable, type Writable } from 'node:stream';

const BATCH = 128 * 1024;

export function teeTo(src: Readable, side: Writable): Readable {
  const main = new PassThrough();
  let sideOk = true;
  const dropSide = (): void => {
    if (!sideOk) return;
    sideOk = false;
    side.destroy();
  };
  side.on('error', dropSide);
  side.on('close', () => {
    sideOk = false;
  });
  const wait = (w: Writable): Promise<void> => new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.on('drain', done);
    w.on('close', done);
  });
  // Small chunks (tar headers, small files) are passed on in batches: a pipe write per 512-byte header costs more
  // than the bytes.
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const send = async (): Promise<void> => {
    if (batchBytes === 0) return;
    const chunk = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
    batch = [];
    batchBytes = 0;
    if (main.destroyed) throw new Error('layer stream closed');
    const waits: Promise<void>[] = [];
    if (!main.write(chunk)) waits.push(wait(main));
    if (sideOk && !side.write(chunk)) waits.push(wait(side));
    if (waits.length > 0) await Promise.all(waits);
  };
  void (async () => {
    try {
      for await (const c of src) {
        const chunk = c as Buffer;
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes >= BATCH) await send();
      }
      await send();
      main.end();
      if (sideOk) side.end();
    } catch (e) {
      dropSide();
      src.destroy();
      main.destroy(e as Error);
    }
  })();
  return main;
}
