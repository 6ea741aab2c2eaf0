import { MemoryStorage } from '../memory.ts';
import { storageContract } from './contract.ts';

storageContract('memory', async () => {
  const storage = new MemoryStorage();
  // The same instance is the "reopened" store: data must survive close/open.
  return { storage, reopen: async () => (await storage.open(), storage), cleanup: async () => {} };
});
