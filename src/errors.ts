/**
 * The one error type hoist raises for anything a user can fix or should know about.
 *
 * The CLI prints `hoist: <message>` as one line (no stack unless --debug) and exits with `exitCode`.
 * Messages follow "what, where, what to do": e.g.
 *   `oci-archive:/tmp/x.tar: not a tar archive (bad header at byte 0); pass a file made by skopeo copy or hoist copy`
 */
export class HoistError extends Error {
  /** Stable machine-readable kind, e.g. 'BAD_REFERENCE', 'NOT_FOUND', 'DIGEST_MISMATCH'. */
  readonly code: string;
  /** Process exit code the CLI uses (1 generic, 2 usage, 125 like podman for "hoist itself failed" in run). */
  readonly exitCode: number;

  constructor(code: string, message: string, options?: { cause?: unknown; exitCode?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HoistError';
    this.code = code;
    this.exitCode = options?.exitCode ?? 1;
  }
}

export function isHoistError(e: unknown): e is HoistError {
  return e instanceof HoistError;
}

/** True for Node system errors with the given errno code (ENOENT, EEXIST, …). */
export function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}
