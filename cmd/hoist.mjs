#!/usr/bin/env -S node --
// `node --`: Node 24 reads --env-file even after the script name (nodejs/node#54232), so `hoist run --env-file F`
// would be taken by Node itself; `--` ends Node's options.
// No V8 flags here: each one tried (--liftoff-only, --wasm-tiering-budget) made V8 reject the code cache built
// into Node for its own modules, ~12 ms more for `run` and `build`. --liftoff-only would save ~25 ms on registry
// commands (a finished `inspect` waits for V8's background optimization of undici's llhttp wasm), so it is a trade,
// and the commands that run most lose by it; bench/lib.ts hoistBin starts the bin with whatever flags this line has.
// The bin entry, in plain JS on purpose: Node strips TypeScript types before a .ts entry runs, and loading the
// stripper costs ~40 ms per start; turning the compile cache on first lets cached .ts modules skip it.
// The cache directory is per user: Node's default (one directory in /tmp) belongs to whoever ran first, and every
// other user then silently runs without a cache. It goes in the environment too, so the Node processes hoist starts
// (the runtime's namespace helper) use the same cache.
import module from 'node:module';
import { tmpdir } from 'node:os';
process.env.NODE_COMPILE_CACHE ||= `${tmpdir()}/hoist-compile-cache-${process.getuid?.() ?? 'u'}`;
module.enableCompileCache?.(process.env.NODE_COMPILE_CACHE);
await import('./hoist.ts');
