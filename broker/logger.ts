/**
 * The logger shape the core needs. bin/ passes a pino logger (structured
 * JSON); tests may pass `silentLogger`.
 */
export interface Logger {
  trace(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => {};

export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
};

/** Bound a snippet of client input before it reaches a log line. */
export function snippet(input: string, max = 200): string {
  return input.length > max ? `${input.slice(0, max)}…(${input.length} chars)` : input;
}
