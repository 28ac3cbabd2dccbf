#!/usr/bin/env -S node --liftoff-only --
// `node --`: Node 24 reads --env-file even after the script name (nodejs/node#54232), so `hoist run --env-file F`
// would be taken by Node itself; `--` ends Node's options.
// `--liftoff-only`: undici parses HTTP with llhttp compiled to WebAssembly. After a few requests V8 starts optimizing
// its big parser function on a background thread, and a process that is done waits for that compile before it exits:
// ~30 ms on every `inspect` or `copy`. The baseline code is quick enough for header parsing (bodies are only handed
// through), and the flag must be on the command line: set at run time it no longer reaches the wasm compiler.
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
