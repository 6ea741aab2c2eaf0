#!/usr/bin/env node
// Entry point for `npx parley` / an installed bin: load the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('./parley.ts');
