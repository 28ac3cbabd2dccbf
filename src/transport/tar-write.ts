/**
 * Writes a tar archive into place atomically: entries stream into `FILE.tmp-<random>` beside the target, which is
 * synced and renamed over FILE only when complete, so a reader never sees half an archive and a failed write leaves
 * whatever FILE was before.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header } from 'tar-stream';
import { HoistError, isErrno } from '../errors.ts';

type EntryHeader = Partial<Header> & Pick<Header, 'name'>;

/** One archive entry: bytes in memory, a file on disk streamed in, or no data (directories, symlinks). */
export interface TarWriteEntry {
  header: EntryHeader;
  data?: Buffer;
  /** A file whose content becomes the entry's data (its current size is used). */
  file?: string;
}

/** Fails early, before any work, when the directory the archive goes to is missing. */
export async function checkArchiveTarget(target: string, where: string): Promise<void> {
  const dir = path.dirname(path.resolve(target));
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw new HoistError('NOT_FOUND', `${where}: ${dir} is not a directory`);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) throw new HoistError('NOT_FOUND', `${where}: directory ${dir} does not exist; create it first`, { cause: e });
    throw e;
  }
  try {
    if ((await stat(target)).isDirectory()) {
      throw new HoistError('BAD_ARCHIVE', `${where}: is a directory; name a file to write the archive to (or use oci: for a layout directory)`);
    }
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
}

export async function writeTarAtomically(target: string, entries: Iterable<TarWriteEntry> | AsyncIterable<TarWriteEntry>): Promise<void> {
  const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
  const pack = tarPack();
  const written = pipeline(pack, createWriteStream(tmp, { flags: 'wx' }));
  // If the writer fails first, stop feeding entries (the pipeline has destroyed the pack).
  written.catch(() => {});
  try {
    for await (const e of entries) {
      if (e.file !== undefined) {
        const size = (await stat(e.file)).size;
        const file = e.file;
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...e.header, size }, (err) => (err ? reject(err) : resolve()));
          const rs = createReadStream(file);
          rs.on('error', (err) => {
            sink.destroy(err);
            reject(err);
          });
          rs.pipe(sink);
        });
      } else if (e.data !== undefined) {
        await new Promise<void>((resolve, reject) => {
          pack.entry({ ...e.header, size: e.data!.length }, e.data!, (err) => (err ? reject(err) : resolve()));
        });
      } else {
        await new Promise<void>((resolve, reject) => {
          pack.entry({ ...e.header, size: 0 }, (err) => (err ? reject(err) : resolve()));
        });
      }
    }
    pack.finalize();
    await written;
    const fh = await open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    pack.destroy();
    await written.catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
