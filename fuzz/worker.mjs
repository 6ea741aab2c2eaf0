// Worker entry: a worker thread does not inherit the parent's `--import tsx`
// hooks for its own entry module, so register tsx here, then load the engine.
import { register } from 'tsx/esm/api';

register();
await import('./engine.ts');
