#!/usr/bin/env -S node --max-semi-space-size=16
// `settle` command shim: runs the TypeScript CLI directly (Node strips types from .ts files
// outside node_modules, which holds because Settle runs from its own checkout or image).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`settle needs Node.js 22.18 or newer (24 recommended) to run TypeScript directly; this is ${process.version}.\n`);
  process.exit(1);
}
// main.ts runs itself only as the entry module (`import.meta.main`), so call it here.
const { main } = await import('../src/cli/main.ts');
await main(process.argv);
