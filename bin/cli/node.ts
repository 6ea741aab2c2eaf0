// `parley start` and `parley check-config`.
import { ConfigError, type Config } from '../config.ts';
import { ListenError, makeLogger, startNode } from '../node.ts';
import { installProcessGuard } from '../guard.ts';
import { availableParallelism } from 'node:os';
import { fail, loadConfig, program } from './program.ts';

export function registerNodeCommands(): void {
  program
    .command('start')
    .description('run a node')
    .action(async () => {
      let cfg: Config;
      try {
        cfg = loadConfig(program.opts());
      } catch (err) {
        fail(err);
      }
      const log = makeLogger(cfg);
      // bin/parley (the launcher) picks V8's GC threads by CPU count; say what it picked
      const gc = process.execArgv.includes('--single-threaded-gc') ? 'single' : 'parallel';
      // and the young generation's size; V8 takes the last of repeated flags (PARLEY_NODE_ARGS comes after the launcher's)
      const semi = process.execArgv.filter((a) => a.startsWith('--max-semi-space-size=')).pop();
      log.info(
        {
          gc,
          cpus: availableParallelism(),
          semiSpaceMiB: semi ? Number(semi.split('=')[1]) : 'default',
        },
        'garbage collection threads',
      );
      let node;
      try {
        node = await startNode(cfg, log, { loadConfig: () => loadConfig(program.opts()) });
      } catch (err) {
        if (err instanceof ListenError) {
          // An operator's mistake, not a bug: one line, no stack.
          console.error(`parley: ${err.message}`);
          process.exit(1);
        }
        log.error({ err }, 'start failed');
        fail(err);
      }
      const shutdown = (signal: string) => {
        log.info({ signal }, 'shutting down');
        node.stop().then(
          () => process.exit(0),
          (err) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      node.onDrained = () => shutdown('drain');
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
      // `parley reload` as a signal (systemctl reload, certbot deploy hooks): the configuration and the certificate files; connections stay.
      process.on('SIGHUP', () => {
        node
          .reload()
          .catch((err) =>
            log.error(
              { err: err instanceof ConfigError ? err.message : err },
              'reload failed: nothing was changed',
            ),
          );
      });
      installProcessGuard(log, node.broker.metrics);
    });

  program
    .command('check-config')
    .description('validate the configuration and print it')
    .action(() => {
      try {
        console.log(JSON.stringify(loadConfig(program.opts()), null, 2));
      } catch (err) {
        fail(err);
      }
    });
}
