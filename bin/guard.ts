import type { Logger, Metrics } from '../broker/index.ts';

/**
 * The last line of defence of a running node: an exception no handler caught
 * or a promise rejection no one handled is logged (error level, with the
 * error) and counted (`parley_errors_total{source="uncaught"}`, and the admin
 * page's recent errors), and the node keeps running.
 *
 * Keeping running after an uncaught exception is a choice: Node's default is
 * to exit, since the code that threw may have left its own state half-done.
 * Here that state is one connection's or one request's (every handler is
 * written to catch its own errors; this guard is for the ones that slipped),
 * while exiting would drop every session on the node, which is what an
 * attacker who found such a path wants. ejabberd and Prosody make the same
 * choice (a crashed process or a failed event handler, not a dead server).
 * A bug found this way is still a bug: the count and the log line say where.
 */
export function processGuard(log: Logger, metrics: Pick<Metrics, 'error'>) {
  const report = (
    kind: 'uncaught exception' | 'unhandled rejection',
    err: unknown,
    origin?: string,
  ) => {
    const text = err instanceof Error ? err.message : String(err);
    log.error({ err, origin }, `${kind}: the node keeps running`);
    metrics.error('uncaught', `${kind}: ${text.slice(0, 200)}`);
  };
  return {
    uncaughtException: (err: unknown, origin?: string): void =>
      report('uncaught exception', err, origin),
    unhandledRejection: (reason: unknown): void => report('unhandled rejection', reason),
  };
}

/** Install the guard on this process; returns the function that removes it. */
export function installProcessGuard(log: Logger, metrics: Pick<Metrics, 'error'>): () => void {
  const g = processGuard(log, metrics);
  process.on('uncaughtException', g.uncaughtException);
  process.on('unhandledRejection', g.unhandledRejection);
  return () => {
    process.off('uncaughtException', g.uncaughtException);
    process.off('unhandledRejection', g.unhandledRejection);
  };
}
