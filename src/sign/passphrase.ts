/**
 * Where a key's passphrase comes from, in skopeo's and cosign's order: --passphrase-file, else $COSIGN_PASSWORD,
 * else a prompt without echo when stdin is a terminal. Nothing else (no argv: it would show in `ps`).
 */
import { open } from 'node:fs/promises';
import { HoistError, isErrno } from '../errors.ts';

export interface PassphraseOptions {
  /** --passphrase-file. */
  file?: string;
  /** What the passphrase is for, in messages and the prompt: `the private key ./cosign.key`. */
  what: string;
  /** Ask twice on a terminal and insist both agree (for a new key). */
  confirm?: boolean;
}

export async function getPassphrase(opts: PassphraseOptions): Promise<string> {
  if (opts.file !== undefined) return readPassphraseFile(opts.file);
  // cosign takes the variable when it is set at all, even to the empty string.
  const env = process.env['COSIGN_PASSWORD'];
  if (env !== undefined) return env;
  if (process.stdin.isTTY) {
    const first = await readHidden(`Enter passphrase for ${opts.what}: `, opts.what);
    if (opts.confirm) {
      const again = await readHidden(`Enter passphrase for ${opts.what} again: `, opts.what);
      if (again !== first) {
        throw new HoistError('PASSPHRASE_MISMATCH', `the two passphrases typed for ${opts.what} differ; run the command again and type the same one twice`);
      }
    }
    return first;
  }
  throw new HoistError('NO_PASSPHRASE', `a passphrase is needed for ${opts.what}: pass --passphrase-file FILE or set COSIGN_PASSWORD`, { exitCode: 2 });
}

/**
 * containers/common's cli.ReadPassphraseFile (used by skopeo and podman): the FIRST line of the file, without its
 * "\n" (a "\r" before it stays, as there). Read up to the first newline only, like gpg's --passphrase-file.
 */
export async function readPassphraseFile(file: string): Promise<string> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    const why = isErrno(e, 'ENOENT') ? 'no such file' : isErrno(e, 'EACCES') ? 'permission denied' : (e as Error).message;
    throw new HoistError('BAD_PASSPHRASE_FILE', `--passphrase-file ${file}: cannot read it (${why})`, { cause: e });
  }
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(4096);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      const nl = chunk.indexOf(0x0a);
      if (nl >= 0) {
        chunks.push(Buffer.from(chunk.subarray(0, nl)));
        break;
      }
      chunks.push(Buffer.from(chunk));
    }
    return Buffer.concat(chunks).toString('utf8');
  } catch (e) {
    throw new HoistError('BAD_PASSPHRASE_FILE', `--passphrase-file ${file}: cannot read it (${(e as Error).message})`, { cause: e });
  } finally {
    await fh.close();
  }
}

/** Reads one line from the terminal on stdin with echo off (raw mode), prompting on stderr. */
function readHidden(prompt: string, what: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let typed = '';
    const wasRaw = stdin.isRaw;
    const finish = (err: Error | undefined): void => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (s: string): void => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') return finish(undefined);
        if (ch === '\u0003') {
          return finish(new HoistError('INTERRUPTED', `interrupted while reading the passphrase for ${what}`, { exitCode: 130 }));
        }
        if (ch === '\u0004') {
          if (typed === '') return finish(new HoistError('NO_PASSPHRASE', `no passphrase typed for ${what} (end of input)`));
          return finish(undefined);
        }
        if (ch === '\u007f' || ch === '\b') typed = [...typed].slice(0, -1).join('');
        else if (ch === '\u0015') typed = '';
        else typed += ch;
      }
    };
    const onEnd = (): void => finish(new HoistError('NO_PASSPHRASE', `no passphrase typed for ${what} (end of input)`));
    stdin.setEncoding('utf8');
    // Echo off before the prompt shows: whatever is typed after seeing it must not reach the screen.
    stdin.setRawMode(true);
    process.stderr.write(prompt);
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.resume();
  });
}
