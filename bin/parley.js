#!/usr/bin/env -S node --max-semi-space-size=64
// The flag: see docs/configuration.md, "Node runtime flags".
// Entry point for `npx parley` / an installed bin: load the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('./parley.ts');
