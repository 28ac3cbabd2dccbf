/**
 * What a COPY/ADD reads, whatever it reads from: the build context (src/build/context.ts) or the filesystem of
 * another stage or image (src/build/layer-tree.ts). The layer writer (src/build/copy-layer.ts) takes these.
 */

export interface SourceEntry {
  /** Path relative to the source root, '/'-separated, no leading '/' or './'; '' is the root itself. */
  rel: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of a file; 0 otherwise. */
  size: number;
  mtimeMs: number;
  /** A symlink's target, as stored. */
  linkname?: string;
  /** Where the bytes of a file can be read on this machine (a context file, or a file extracted to a temp dir). */
  abs?: string;
  /** The bytes of a file held in memory instead (a COPY heredoc). */
  content?: Buffer;
  /** Extended attributes to carry (from image layers); context files carry none, as BuildKit. */
  xattrs?: Record<string, Buffer>;
}

/** One top-level match of a COPY source pattern: the matched path and, for a directory, everything below it. */
export interface SourceMatch {
  /** The matched path, relative to the source root ('' for `.`). */
  rel: string;
  /** The matched entry first, then (for a directory) its subtree, in sorted order. `rel`s are relative to the root. */
  entries: SourceEntry[];
}

/** Something COPY can read from. */
export interface SourceTree {
  /**
   * The matches of one COPY source word (already expanded): a path or a glob (`*`, `?`, `[...]` per path segment,
   * as Go's filepath.Match, which BuildKit uses), relative to the root; a leading '/' or './' means the root.
   * `exclude`: --exclude patterns (dockerignore syntax) applied below the matches.
   * Throws HoistError NOT_FOUND (`COPY failed: file not found in build context: x`) when nothing matches.
   */
  match(pattern: string, exclude?: string[]): Promise<SourceMatch[]>;
  /** The entry at `rel` (symlinks not followed), or undefined. */
  stat(rel: string): Promise<SourceEntry | undefined>;
}
