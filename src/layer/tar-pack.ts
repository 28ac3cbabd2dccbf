/**
 * Writing entries into a tar-stream pack, as the layer writers do (the RUN diff in diff.ts, COPY/ADD layers in
 * src/build/copy-layer.ts): byte-exact pax xattr headers, waiting for an entry's sink to drain, and the sinks'
 * error events.
 */
import type { Pack } from 'tar-stream';
import { fitsUstar, paxHeaderBlocks, paxRecord, ustarStandIn } from './xattrs.ts';

export type PackHeader = Parameters<Pack['entry']>[0];

/**
 * For an entry with xattrs: writes its pax header ourselves (tar-stream would encode the values as UTF-8 text,
 * corrupting binary ones such as security.capability), folding in the records tar-stream would have written
 * (path, linkpath, uid, gid), and leaves `h` a plain ustar header. Call only while the pack is between entries
 * (every entry awaited before the next starts), so these bytes land right before `h`'s header.
 */
export function pushPaxXattrs(pack: Pack, h: PackHeader, xattrs: Array<[string, Buffer]>): void {
  if (xattrs.length === 0) return;
  const records: Buffer[] = [];
  if (!fitsUstar(h.name)) {
    records.push(paxRecord('path', h.name));
    h.name = ustarStandIn(h.name);
  }
  if (h.linkname !== undefined && h.linkname !== null && !fitsUstar(h.linkname)) {
    records.push(paxRecord('linkpath', h.linkname));
    h.linkname = ustarStandIn(h.linkname);
  }
  if (h.pax) {
    for (const [k, v] of Object.entries(h.pax)) records.push(paxRecord(k, v));
    delete h.pax;
  }
  for (const [name, value] of xattrs) records.push(paxRecord(`SCHILY.xattr.${name}`, value));
  const mtimeS = Math.floor((h.mtime ?? new Date(0)).getTime() / 1000);
  pack.push(paxHeaderBlocks(records, { mode: h.mode ?? 0, uid: h.uid ?? 0, gid: h.gid ?? 0, mtimeS }));
}

/** Resolves when an entry sink wants more bytes; rejects when the pack closed under it. */
export function drained(sink: ReturnType<Pack['entry']>): Promise<void> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      sink.off('drain', onDrain);
      sink.off('close', onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error('layer tar stream closed while writing'));
    };
    sink.on('drain', onDrain);
    sink.on('close', onClose);
  });
}

/**
 * For entry sinks' 'error' events: they fire when the pack is destroyed (the reader went away); the entries'
 * callbacks already carry the error, and an 'error' event without a listener would crash the process.
 */
export function ignoreSinkError(): void {}
