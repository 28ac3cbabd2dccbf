#!/usr/bin/env node
// The bin entry, in plain JS on purpose: Node strips TypeScript types before a .ts entry runs, and loading the
// stripper costs ~40 ms per start; turning the compile cache on first lets cached .ts modules skip it.
import module from 'node:module';
module.enableCompileCache?.();
await import('./hoist.ts');
