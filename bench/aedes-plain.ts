// The MQTT reference: a plain aedes broker (in-memory persistence, no auth,
// no ACL), one process. Prints {"ready":true,"port":N} once listening.
//   node --import tsx bench/aedes-plain.ts [--host 127.0.0.1] [--port 0]
import net from 'node:net';
import { Aedes } from 'aedes';
import { num, parseFlags, str } from './lib/common.ts';

const f = parseFlags();
const broker = await Aedes.createBroker();
const server = net.createServer(broker.handle);
server.listen(num(f, 'port', 0), str(f, 'host', '127.0.0.1'), () => {
  const addr = server.address() as net.AddressInfo;
  console.log(JSON.stringify({ ready: true, port: addr.port, pid: process.pid }));
});
const stop = () => {
  server.close();
  broker.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
