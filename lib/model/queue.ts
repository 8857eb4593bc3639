/**
 * The FIFO queue of one model's asynchronous calls (docs/ARCHITECTURE.md
 * "Concurrency"): each call runs after every call queued before it, one at a
 * time; closing the queue rejects the queued calls with DisposedError and
 * lets the running one finish.
 */
import { callNative, DisposedError, stitchStack } from '../errors';

interface Job {
  run: () => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class CallQueue {
  private readonly jobs: Job[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  private count = 0;

  /** Calls enqueued so far (a batch of generations takes joiners while it is the last: lib/generate/scheduler.ts). */
  get issued(): number {
    return this.count;
  }

  /** True once close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Runs `fn` after every call queued before it. Its errors carry the stack
   * of enqueue's caller (the model's method, then the user's code) instead
   * of the queue's.
   */
  enqueue<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new DisposedError('This model was disposed'));
    this.count++;
    const caller = new Error().stack;
    return new Promise<T>((resolve, reject) => {
      this.jobs.push({
        run: () =>
          callNative(fn).catch((e: unknown) => {
            if (e instanceof Error) stitchStack(e, caller, 1);
            throw e;
          }),
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      if (!this.running) this.running = this.pump();
    });
  }

  /**
   * Waits for a turn in the queue and holds it until the returned release()
   * is called (a stream holds the model for as long as it is iterated).
   * Rejects with DisposedError if the queue closes before the turn comes.
   */
  async hold(): Promise<() => Promise<void>> {
    let release: () => void = () => undefined;
    const finished = new Promise<void>((r) => (release = r));
    let begin: () => void = () => undefined;
    const myTurn = new Promise<void>((r) => (begin = r));
    const job = this.enqueue(async () => {
      begin();
      await finished;
    });
    await Promise.race([myTurn, job]);
    return async () => {
      release();
      await job.catch(() => undefined);
    };
  }

  /**
   * Closes the queue: the queued calls reject with DisposedError and later
   * ones are refused. Returns the running call's completion (null when
   * nothing runs). Idempotent.
   */
  close(): Promise<void> | null {
    if (!this.closed) {
      this.closed = true;
      for (const j of this.jobs.splice(0)) j.reject(new DisposedError('The model was disposed before this call ran'));
    }
    return this.running;
  }

  private async pump(): Promise<void> {
    for (;;) {
      const job = this.jobs.shift();
      if (!job) break;
      try {
        job.resolve(await job.run());
      } catch (e) {
        job.reject(e);
      }
    }
    this.running = null;
  }
}
