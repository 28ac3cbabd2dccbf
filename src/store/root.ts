/** Where hoist's local store lives: the same lookup order podman users expect from XDG-style tools. */
import { homedir } from 'node:os';
import path from 'node:path';

/** `override` (the --root flag), else `$HOIST_ROOT`, else `$XDG_DATA_HOME/hoist`, else `~/.local/share/hoist`. */
export function storeRoot(override?: string): string {
  if (override) return path.resolve(override);
  const env = process.env['HOIST_ROOT'];
  if (env) return path.resolve(env);
  const xdg = process.env['XDG_DATA_HOME'];
  // The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'hoist');
  return path.join(homedir(), '.local', 'share', 'hoist');
}
