import { MongoClient } from 'mongodb';
import { MongoStorage } from '../mongodb.ts';
import { storageContract } from './contract.ts';

const url = process.env.MONGODB_URL;
let n = 0;

if (url) {
  storageContract('mongodb', async () => {
    // A database per test, dropped afterwards.
    const dbName = `parley_test_${process.pid}_${++n}`;
    return {
      storage: new MongoStorage({ url, dbName }),
      reopen: async () => {
        const storage = new MongoStorage({ url, dbName });
        await storage.open();
        return storage;
      },
      cleanup: async () => {
        const client = await MongoClient.connect(url);
        await client.db(dbName).dropDatabase();
        await client.close();
      },
    };
  });
} else {
  describe('storage contract: mongodb', function () {
    it('SKIPPED: set MONGODB_URL to run the MongoDB contract suite', function () {
      this.skip();
    });
  });
}
