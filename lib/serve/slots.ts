/**
 * Admission to the model: at most `capacity` sequences (a request with n
 * choices takes n) are handed to the model at once, the decode batch; the
 * requests beyond it wait in a FIFO queue of at most `maxQueue`, and a
 * request that finds the queue full is refused at once (the server answers
 * 429). A waiting request whose signal aborts (its client went away) leaves
 * the queue without ever reaching the model.
 */

export class QueueFullError extends Error {
  constructor(readonly waiting: number) {
    super(`The server is at capacity: ${waiting} requests are already waiting`);
    this.name = 'QueueFullError';
  }
}

interface Waiter {
  weight: number;
  grant: (release: () => void) => void;
  fail: (e: unknown) => void;
  cleanup: () => void;
}

export class Slots {
  private used = 0;
  private readonly queue: Waiter[] = [];

  constructor(
    readonly capacity: number,
    readonly maxQueue: number,
    /** called whenever the numbers below change */
    private readonly onChange: () => void = () => undefined,
  ) {}

  /** Sequences admitted now. */
  get inUse(): number {
    return this.used;
  }

  /** Requests waiting for slots. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Resolves with a release function once `weight` slots are granted (in
   * arrival order). Throws QueueFullError at once when the request would
   * have to wait and the queue is full; rejects with the signal's reason if
   * it aborts while waiting.
   */
  acquire(weight: number, signal?: AbortSignal): Promise<() => void> {
    if (weight < 1 || weight > this.capacity)
      throw new RangeError(`Expected a weight between 1 and ${this.capacity} for the slots but received ${weight}`);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length === 0 && this.used + weight <= this.capacity) return Promise.resolve(this.take(weight));
    if (this.queue.length >= this.maxQueue) throw new QueueFullError(this.queue.length);
    return new Promise<() => void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason);
        // The head may have been the one blocking the others.
        this.pump();
        this.onChange();
      };
      const w: Waiter = {
        weight,
        grant: resolve,
        fail: reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
      this.onChange();
    });
  }

  private take(weight: number): () => void {
    this.used += weight;
    this.onChange();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= weight;
      this.pump();
      this.onChange();
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && this.used + this.queue[0].weight <= this.capacity) {
      const w = this.queue.shift()!;
      w.cleanup();
      w.grant(this.take(w.weight));
    }
  }

  /** Rejects every waiting request with `reason` (shutdown). */
  rejectWaiting(reason: unknown): void {
    for (const w of this.queue.splice(0)) {
      w.cleanup();
      w.fail(reason);
    }
    this.onChange();
  }
}
