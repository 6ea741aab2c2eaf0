import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedStorage } from '../embedded.ts';
import { storageContract } from './contract.ts';

storageContract('embedded', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'parley-embedded-'));
  return {
    storage: new EmbeddedStorage({ dir }),
    reopen: async () => {
      const storage = new EmbeddedStorage({ dir });
      await storage.open();
      return storage;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
