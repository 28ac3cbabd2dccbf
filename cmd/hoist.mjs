#!/usr/bin/env node
// The bin entry, in plain JS on purpose: Node strips TypeScript types before a .ts entry runs, and loading the
// stripper costs ~40 ms per start; turning the compile cache on first lets cached .ts modules skip it.
// The cache directory is per user: Node's default (one directory in /tmp) belongs to whoever ran first, and every
// other user then silently runs without a cache.
import module from 'node:module';
import { tmpdir } from 'node:os';
module.enableCompileCache?.(process.env.NODE_COMPILE_CACHE || `${tmpdir()}/hoist-compile-cache-${process.getuid?.() ?? 'u'}`);
await import('./hoist.ts');
