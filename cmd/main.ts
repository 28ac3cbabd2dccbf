/**
 * Runs a command's action module and turns failures into one clear line and an exit code.
 * Action modules live in cmd/actions/<name>.ts and export `default async function (ctx, ...args)`.
 */
import type { Command } from 'commander';
import { runShutdown } from '../src/util/shutdown.ts';

export interface GlobalOptions {
  debug: boolean;
  root?: string;
  /** skopeo's global signature-policy flags (cmd/policy-flags.ts); copy, run and build read them. */
  policy?: string;
  insecurePolicy?: boolean;
}

export type Action = (globals: GlobalOptions, ...args: unknown[]) => Promise<number | void>;

export function runAction(name: string): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    // commander passes (...positionals, options, command)
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals() as GlobalOptions;
    try {
      const mod = (await import(`./actions/${name}.ts`)) as { default: Action };
      const code = await mod.default(globals, ...args.slice(0, -1));
      if (typeof code === 'number' && code !== 0) process.exitCode = code;
    } catch (e) {
      process.exitCode = await reportError(e, globals.debug);
    } finally {
      await runShutdown();
    }
  };
}

export async function reportError(e: unknown, debug: boolean): Promise<number> {
  const { isHoistError } = await import('../src/errors.ts');
  if (isHoistError(e)) {
    process.stderr.write(`hoist: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    return e.exitCode;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`hoist: ${err.message}${debug ? '' : ' (run with --debug for details)'}\n`);
  if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
  return 1;
}
