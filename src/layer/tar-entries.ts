/**
 * Reading an uncompressed tar stream entry by entry with tar-stream, for everything that walks a layer's tar
 * (unpack.ts; the build's layer trees and squash). tar-stream's extract is a streamx stream that Node's pipeline does
 * not track, so it is piped into, and its own errors and the source's are collected here so that the error reported
 * is the first one, the cause (an entry whose body breaks off fails with some secondary error).
 */
import type { Readable } from 'node:stream';
import { extract as tarExtract, type Header } from 'tar-stream';
import { keepRawPaxXattrs } from './xattrs.ts';

/** A tar header as tar-stream decodes it, pax records as strings (raw xattr values kept aside: see xattrs.ts). */
export type TarHeader = Omit<Header, 'pax'> & { pax?: Record<string, string> | null };
/** A tar entry's body as tar-stream hands it over (a streamx Readable). */
export type EntryBody = AsyncIterable<unknown> & { resume(): unknown };

/**
 * Calls `onEntry` for one entry of `source` at a time, with its header, body and ordinal; `onEntry` returning true
 * stops the read there. A failure of the source or of the tar parser is thrown as `badTar(first error)`; an error
 * `onEntry` throws is thrown as it is, unless the stream had failed first (then that is the cause). When the read
 * stops early or fails, `source` is destroyed.
 */
export async function forEachTarEntry(
  source: Readable,
  onEntry: (h: TarHeader, body: EntryBody, n: number) => Promise<boolean>,
  badTar: (e: unknown) => unknown,
): Promise<void> {
  const extract = tarExtract();
  keepRawPaxXattrs(extract);
  let streamError: unknown;
  extract.on('error', (e: unknown) => {
    streamError ??= e;
  });
  const onSourceError = (e: Error): void => {
    streamError ??= e;
    extract.destroy(e);
  };
  source.on('error', onSourceError);
  source.pipe(extract as unknown as NodeJS.WritableStream);
  const entries = (extract as unknown as AsyncIterable<EntryBody & { header: TarHeader }>)[Symbol.asyncIterator]();
  let n = 0;
  let completed = false;
  try {
    for (;;) {
      let next: IteratorResult<EntryBody & { header: TarHeader }>;
      try {
        next = await entries.next();
      } catch (e) {
        throw badTar(streamError ?? e);
      }
      if (next.done) break;
      const entry = next.value;
      let stop: boolean;
      try {
        stop = await onEntry(entry.header, entry, n++);
      } catch (e) {
        throw streamError === undefined ? e : badTar(streamError);
      } finally {
        entry.resume();
      }
      if (stop) return;
    }
    if (streamError !== undefined) throw badTar(streamError);
    completed = true;
  } finally {
    source.off('error', onSourceError);
    if (!completed) {
      // Stopped early or failed: close the source and drop the parser without waiting for the rest.
      source.unpipe(extract as unknown as NodeJS.WritableStream);
      source.destroy();
      extract.destroy();
      await entries.return?.();
    }
  }
}
