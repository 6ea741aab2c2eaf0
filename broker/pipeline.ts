import type { Ordered } from './router.ts';

/** At most this many pipelined steps of one origin are in flight (an internal bound, not a client-visible limit). */
export const MAX_PIPELINE = 32;

const SETTLED: Promise<void> = Promise.resolve();
const noop = (): void => {};

/**
 * One origin's steps in order, messages pipelined (Router.route with an
 * {@link Ordered}): a pipelined step lets the next one start as soon as it
 * calls `admit` (its archive append has been asked for) rather than when it
 * is done, and gets `after`, which settles once every earlier step is done,
 * for the router to wait on before anything goes out. An exclusive step
 * (presence, IQs, anything else) starts only once every earlier step is
 * done. Used by the XMPP stream and the MQTT session alike.
 */
export class OriginPipeline {
  /** Settles when the next step may start. */
  #next: Promise<void> = SETTLED;
  /** Settles (never rejects) when every step so far is done. */
  #tail: Promise<unknown> = SETTLED;
  #depth = 0;
  /** The completions of the last {@link MAX_PIPELINE} pipelined steps, oldest first. */
  readonly #window: Promise<unknown>[] = [];

  /** Pipelined steps not yet done. */
  get depth(): number {
    return this.#depth;
  }

  /** Settles (never rejects) once every step started so far is done. */
  get idle(): Promise<unknown> {
    return this.#tail;
  }

  /**
   * Starts `step` once the previous step is admitted or done and, with
   * {@link MAX_PIPELINE} steps in flight, once the oldest of them is done. Returns the step's own outcome, and
   * `next`: when a following step could start.
   */
  pipelined<T>(step: (ord: Ordered) => Promise<T>): { done: Promise<T>; next: Promise<void> } {
    // Once per message on the chat path, so few promises: `admitted` also
    // settles when the step is done (it may never admit), which is all the
    // next step waits for; no race, no finally.
    let admit!: () => void;
    const admitted = new Promise<void>((resolve) => (admit = resolve));
    const after = this.#tail;
    this.#depth++;
    const done = this.#next.then(() => step({ admit, after }));
    // Done only once the earlier steps are too, even if this one failed early.
    // (Inline arrows: tsx's keepNames would wrap a named closure on every call.)
    const settled = done
      .then(
        () => (admit(), after),
        () => (admit(), after),
      )
      .then(this.#stepDone);
    this.#tail = settled;
    this.#window.push(settled);
    if (this.#window.length > MAX_PIPELINE) this.#window.shift();
    // Steps complete in order, so with the bound reached the oldest in flight is the window's first.
    this.#next =
      this.#depth >= MAX_PIPELINE ? Promise.all([admitted, this.#window[0]]).then(noop) : admitted;
    return { done, next: this.#next };
  }

  readonly #stepDone = (): void => {
    // With nothing in flight the window's steps are all done: let them go
    // rather than keep the last MAX_PIPELINE completions of a quiet origin
    // alive for seconds, which had them copied and promoted by every
    // young-generation collection.
    if (--this.#depth === 0) this.#window.length = 0;
  };

  /** Starts `step` once every earlier step is done; later steps wait for it. Returns its outcome. */
  exclusive<T>(step: () => Promise<T>): Promise<T> {
    const done = this.#tail.then(step);
    this.#tail = this.#next = done.then(noop, noop);
    return done;
  }
}
