/**
 * Continuous batching (docs/SERVING.md "Batching", docs/ARCHITECTURE.md
 * "Concurrency"): the generate() and stream() calls on one model that are
 * waiting side by side in its call queue run as one batch, each decode step
 * advancing every running sequence in one native call.
 *
 * - A batch is one job of the model's FIFO call queue. A generation joins
 *   the batch at the tail of the queue (running or waiting); once another
 *   call (a training step, a save, ...) is queued behind it, the batch takes
 *   no one new, and later generations form the next batch behind that call.
 *   So every call still runs after the calls issued before it and sees the
 *   weights they left, as in a queue of single calls.
 * - Inside a batch, calls are admitted first in, first out while their
 *   prompts fit in `maxBatch` sequences (a call with more prompts than that
 *   runs when nothing else is admitted); the others wait.
 * - Each call runs the ordinary decode loop (lib/generate.ts) on a session
 *   of its own rows. Its prefills and steps are collected and run together:
 *   between native calls the batch waits one turn of the event loop for every
 *   admitted call to ask for its next step, then runs one prefill (the new
 *   prompts), one extend (the next chunk of every prompt being prefilled in
 *   chunks) and one step (every sequence that asked). A call that
 *   finishes, stops, aborts or breaks out of its stream closes its session,
 *   and its rows are free for the next admitted call at once.
 * - Chunked prefill: a prompt longer than `prefillChunk` tokens goes in as a
 *   prefill of its first prefillChunk tokens, then one extend of the next
 *   prefillChunk tokens per tick, so the running sequences wait at most one
 *   chunk between two steps. The chunks depend only on the prompt's length
 *   and prefillChunk, so a call alone runs the same chunks.
 * - Rows are slots of one native session (native/core/decode.h) kept by the
 *   model until dispose(): a free slot is reused when its capacity suffices,
 *   else grown (DecodeState::resize, which keeps the other slots' caches), or
 *   a slot is added. Capacities are rounded up to 64 tokens (at most
 *   n_positions), so the cache holds about the most sequences that ran at
 *   once, each at the longest request it served.
 * - Batch invariance: a sequence's logits do not depend on the other rows of
 *   a native prefill, extend or step, and each call samples from its own streams, so
 *   a call's tokens and logits are bitwise those of the same call alone.
 */
import { AbortedError, callNative, callNativeSync, DisposedError } from '../errors';
import { expectInteger } from '../validate';
import { DEFAULT_PREFILL_CHUNK, MAX_PREFILL_CHUNK, NativeDecodeSession, nextChunks, packPrompts } from './native';
import { Decoder, DecodeSession } from './types';

export { DEFAULT_PREFILL_CHUNK, MAX_PREFILL_CHUNK };

export const DEFAULT_MAX_BATCH = 16;
export const MAX_BATCH_LIMIT = 4096;
/** Slot capacities are rounded up to a multiple of this (tokens). */
export const SLOT_GRANULE = 64;

/** Validates a maxBatch option: an integer from 1 to 4096. */
export function checkMaxBatch(v: unknown, field = 'maxBatch'): number {
  return expectInteger(field, v, { min: 1, max: MAX_BATCH_LIMIT });
}

/** Validates a prefillChunk option: an integer from 1 to 1,048,576 (tokens). */
export function checkPrefillChunk(v: unknown, field = 'prefillChunk'): number {
  return expectInteger(field, v, { min: 1, max: MAX_PREFILL_CHUNK });
}

/** What the batch of a model holds now (GPT.batchStats()). */
export interface BatchStats {
  /** The most sequences decoded together. */
  maxBatch: number;
  /** Prompts longer than this are prefilled in chunks of this many tokens. */
  prefillChunk: number;
  /** Sequences admitted now (the rows of the next step). */
  batchSize: number;
  /** generate()/stream() calls admitted now. */
  running: number;
  /** Calls waiting: for room in the batch, or behind another call of the model. */
  queued: number;
  /** Slots of the model's decode session and the bytes of their cache. */
  slots: number;
  cacheBytes: number;
  /** Batched native calls so far, and the sequences they advanced. */
  steps: number;
  prefills: number;
  /** Native extend calls: each ran the next chunk of the prompts being prefilled in chunks. */
  extends: number;
  stepRows: number;
}

/** What the scheduler needs from the model. */
export interface SchedulerHost {
  /** Runs fn as a job of the model's call queue. */
  enqueue<T>(fn: () => Promise<T>): Promise<T>;
  /** Calls enqueued so far (a batch takes joiners while it is the last one). */
  issued(): number;
  /** True once the model is being disposed. */
  closed(): boolean;
  /**
   * Opens a native decode session on the live model, whose extends take
   * up to `extendMax` tokens a sequence.
   */
  open(capacities: Int32Array, abort: Int32Array, extendMax: number): NativeDecodeSession;
  /** Throws when the model is gone. */
  alive(): void;
  vocabSize: number;
  nPositions: number;
  /** Bytes of the cache of sequences of these capacities. */
  cacheBytes(capacities: readonly number[]): number;
}

/** A call's place in a batch: its decoder, valid while it is admitted. */
export interface BatchTicket {
  decoder: Decoder;
  /** Leaves the batch (idempotent); its sessions should be closed first. */
  leave(): void;
}

interface Member {
  weight: number;
  admit: () => void;
  fail: (e: unknown) => void;
}

interface PrefillCall {
  vs: VirtualSession;
  prompts: Int32Array[];
  resolve: (l: Float32Array) => void;
  reject: (e: unknown) => void;
  /** Tokens of each prompt in the cache so far (chunked prefill). */
  done?: number[];
  /** [prompts, vocab]: the logits of each prompt once it is whole. */
  logits?: Float32Array;
}

interface StepCall {
  vs: VirtualSession;
  tokens: Int32Array;
  active: Uint8Array;
  resolve: (l: Float32Array) => void;
  reject: (e: unknown) => void;
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** One call's rows, seen by lib/generate.ts as a DecodeSession of its own. */
class VirtualSession implements DecodeSession {
  closed = false;
  constructor(
    private readonly run: BatchRun,
    readonly slots: number[],
    readonly abort: Int32Array,
    readonly cacheBytes: number,
  ) {}

  prefill(prompts: Int32Array[]): Promise<Float32Array> {
    this.check(prompts.length, 'prompts');
    return new Promise((resolve, reject) => this.run.submitPrefill({ vs: this, prompts, resolve, reject }));
  }

  step(tokens: Int32Array, active: Uint8Array): Promise<Float32Array> {
    this.check(tokens.length, 'tokens');
    this.check(active.length, 'active');
    return new Promise((resolve, reject) => this.run.submitStep({ vs: this, tokens, active, resolve, reject }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.run.scheduler.freeSlots(this.slots);
    this.run.notify();
  }

  private check(n: number, field: string): void {
    this.run.scheduler.host.alive();
    if (this.closed) throw new DisposedError('This decode session was closed');
    if (n !== this.slots.length)
      throw new RangeError(`Expected ${this.slots.length} entries for ${field} (one per sequence) but received ${n}`);
  }
}

/** One batch: a job of the model's call queue and the calls that joined it. */
class BatchRun {
  readonly waiting: Member[] = [];
  admittedWeight = 0;
  admitted = 0;
  joinable = true;
  issuedAt = 0;
  private prefills: PrefillCall[] = [];
  /** Prefills under way: each prompt's next chunk runs at the next tick. */
  private chunking: PrefillCall[] = [];
  private steps: StepCall[] = [];
  private wake: (() => void) | null = null;

  constructor(readonly scheduler: BatchScheduler) {}

  add(m: Member): void {
    this.waiting.push(m);
    this.notify();
  }

  notify(): void {
    const w = this.wake;
    this.wake = null;
    if (w) w();
  }

  submitPrefill(c: PrefillCall): void {
    this.prefills.push(c);
    this.notify();
  }

  submitStep(c: StepCall): void {
    this.steps.push(c);
    this.notify();
  }

  /** Rejects every call that never got in (the queue closed before the batch ran). */
  failWaiting(e: unknown): void {
    for (const m of this.waiting.splice(0)) m.fail(e);
  }

  async loop(): Promise<void> {
    try {
      for (;;) {
        // One turn of the event loop: the calls resumed by the last native
        // call (and those that just joined) ask for their next one.
        await nextTurn();
        // Those admitted now get a turn to ask for their prefill.
        if (this.admit()) continue;
        if (this.prefills.length > 0 || this.chunking.length > 0 || this.steps.length > 0) {
          await this.tick();
          continue;
        }
        if (this.admitted === 0 && this.waiting.length === 0) break;
        await new Promise<void>((r) => (this.wake = r));
      }
    } finally {
      this.joinable = false;
      this.scheduler.runEnded(this);
    }
  }

  /** Admits waiting calls in order while they fit; true if any was. */
  private admit(): boolean {
    const max = this.scheduler.maxBatch;
    let any = false;
    while (this.waiting.length > 0) {
      const m = this.waiting[0];
      if (this.admittedWeight > 0 && this.admittedWeight + m.weight > max) break;
      this.waiting.shift();
      this.admittedWeight += m.weight;
      this.admitted++;
      m.admit();
      any = true;
    }
    return any;
  }

  /**
   * Runs what was asked: one prefill of every new prompt (its first chunk
   * if it is long), one extend of the next chunk of every prompt under way,
   * then one step of every sequence that asked.
   */
  private async tick(): Promise<void> {
    const sched = this.scheduler;
    const V = sched.host.vocabSize;
    const chunk = sched.chunk;
    // A call of a session aborted meanwhile ends here, before native work.
    const live = <C extends { vs: VirtualSession; reject: (e: unknown) => void }>(calls: C[]): C[] =>
      calls.filter((c) => {
        if (c.vs.abort[0] !== 0) c.reject(new AbortedError('Generation was aborted'));
        else if (c.vs.closed) c.reject(new DisposedError('This decode session was closed'));
        else return true;
        return false;
      });
    const prefills = live(this.prefills.splice(0));
    const chunking = live(this.chunking.splice(0));
    const steps = live(this.steps.splice(0));
    if (prefills.length === 0 && chunking.length === 0 && steps.length === 0) return;
    let native: NativeDecodeSession;
    try {
      native = sched.nativeSession();
    } catch (e) {
      for (const c of [...prefills, ...chunking, ...steps]) c.reject(e);
      return;
    }
    const B = native.batch;
    // The chunk of every prompt of these calls, each at its slot; after the
    // native call, a prompt now whole takes its logits, and a call whose
    // prompts are all whole resolves (the others go on at the next tick).
    const chunked = async (calls: PrefillCall[], first: boolean): Promise<void> => {
      const parts: Int32Array[] = Array.from({ length: B }, () => new Int32Array(0));
      const mine = calls.map((c) => {
        c.done ??= c.prompts.map(() => 0);
        const next = nextChunks(c.prompts, c.done, chunk);
        next.forEach((p, i) => (parts[c.vs.slots[i]] = p));
        return next;
      });
      const call = packPrompts(parts);
      if (first) sched.counters.prefills++;
      else sched.counters.extends++;
      await this.runCall(calls, () => (first ? native.prefill(call) : native.extend(call)), (c, out, k) => {
        const l = (c.logits ??= new Float32Array(c.prompts.length * V));
        mine[k].forEach((p, i) => {
          if (p.length === 0) return;
          c.done![i] += p.length;
          const s = c.vs.slots[i];
          if (c.done![i] === c.prompts[i].length) l.set(out.subarray(s * V, (s + 1) * V), i * V);
        });
        if (c.prompts.every((p, i) => c.done![i] === p.length)) c.resolve(l);
        else this.chunking.push(c);
      });
    };
    if (prefills.length > 0) await chunked(prefills, true);
    if (chunking.length > 0) await chunked(chunking, false);
    if (steps.length > 0) {
      const tokens = new Int32Array(B);
      const active = new Uint8Array(B);
      for (const c of steps)
        c.vs.slots.forEach((s, i) => {
          if (c.active[i]) {
            tokens[s] = c.tokens[i];
            active[s] = 1;
            sched.counters.stepRows++;
          }
        });
      sched.counters.steps++;
      await this.runCall(steps, () => native.step({ tokens, active }), (c, out) => {
        const l = new Float32Array(c.vs.slots.length * V);
        c.vs.slots.forEach((s, i) => {
          if (c.active[i]) l.set(out.subarray(s * V, (s + 1) * V), i * V);
        });
        c.resolve(l);
      });
    }
  }

  /**
   * One native call for several sessions: `each` takes call k's rows (copied
   * out, as the native buffer is reused) and settles it; a failure rejects them all.
   */
  private async runCall<C extends { reject: (e: unknown) => void }>(
    calls: C[],
    fn: () => Promise<Float32Array>,
    each: (c: C, out: Float32Array, k: number) => void,
  ): Promise<void> {
    let out: Float32Array;
    try {
      out = await callNative(fn);
    } catch (e) {
      for (const c of calls) c.reject(e);
      return;
    }
    calls.forEach((c, k) => each(c, out, k));
  }
}

/**
 * The continuous batch of one model. generate()/stream() calls join() it and
 * run lib/generate.ts on the ticket's decoder; dispose() frees the slots.
 */
export class BatchScheduler {
  readonly counters = { steps: 0, prefills: 0, extends: 0, stepRows: 0 };
  /** The chunk of a chunked prefill: prefillChunk, at most n_positions. */
  readonly chunk: number;
  private current: BatchRun | null = null;
  private readonly runs = new Set<BatchRun>();
  private native: NativeDecodeSession | null = null;
  private readonly slotCaps: number[] = [];
  private readonly slotUsed: boolean[] = [];
  private resized = false;
  // Never set: one call's abort must not stop the others' rows, so each
  // session's abort is checked between native calls instead.
  private readonly batchAbort = new Int32Array(32);

  constructor(
    readonly host: SchedulerHost,
    readonly maxBatch: number = DEFAULT_MAX_BATCH,
    readonly prefillChunk: number = DEFAULT_PREFILL_CHUNK,
  ) {
    this.chunk = Math.min(prefillChunk, host.nPositions);
  }

  /**
   * Waits for a place in a batch for `weight` sequences. Rejects with the
   * signal's reason if it aborts first, with DisposedError if the model is
   * disposed before the batch runs.
   */
  join(weight: number, signal?: AbortSignal): Promise<BatchTicket> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    let run = this.current;
    if (!run || !run.joinable || this.host.issued() !== run.issuedAt || this.host.closed()) {
      run = new BatchRun(this);
      const r = run;
      this.current = r;
      this.runs.add(r);
      const job = this.host.enqueue(() => r.loop());
      r.issuedAt = this.host.issued();
      job.catch((e: unknown) => {
        r.joinable = false;
        r.failWaiting(e);
        this.runEnded(r);
      });
    }
    const batch = run;
    return new Promise<BatchTicket>((resolve, reject) => {
      let left = false;
      const onAbort = () => {
        const i = batch.waiting.indexOf(m);
        if (i < 0) return;
        batch.waiting.splice(i, 1);
        reject(abortReason(signal!));
        batch.notify();
      };
      const m: Member = {
        weight,
        admit: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve({
            decoder: this.decoderFor(batch),
            leave: () => {
              if (left) return;
              left = true;
              batch.admittedWeight -= weight;
              batch.admitted--;
              batch.notify();
            },
          });
        },
        fail: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      batch.add(m);
    });
  }

  /** Runs `body` with a place in the batch, leaving it when body settles. */
  async with<T>(weight: number, signal: AbortSignal | undefined, body: (d: Decoder) => Promise<T>): Promise<T> {
    const t = await this.join(weight, signal);
    try {
      return await body(t.decoder);
    } finally {
      t.leave();
    }
  }

  stats(): BatchStats {
    let batchSize = 0;
    let running = 0;
    let queued = 0;
    for (const r of this.runs) {
      batchSize += r.admittedWeight;
      running += r.admitted;
      queued += r.waiting.length;
    }
    return {
      maxBatch: this.maxBatch,
      prefillChunk: this.prefillChunk,
      batchSize,
      running,
      queued,
      slots: this.slotCaps.length,
      cacheBytes: this.native ? this.native.cacheBytes() : 0,
      ...this.counters,
    };
  }

  /** Frees the native session (the model calls it once its queue is done). */
  dispose(): void {
    const n = this.native;
    this.native = null;
    if (n) n.close();
  }

  // ---- used by the batch ---------------------------------------------------

  runEnded(r: BatchRun): void {
    this.runs.delete(r);
    if (this.current === r) this.current = null;
  }

  /** The native session with every slot at its capacity (opened or resized now). */
  nativeSession(): NativeDecodeSession {
    const caps = Int32Array.from(this.slotCaps);
    if (!this.native) {
      this.native = callNativeSync(() => this.host.open(caps, this.batchAbort, this.chunk));
      this.resized = false;
    } else if (this.resized) {
      const n = this.native;
      callNativeSync(() => n.resize({ capacities: caps }));
      this.resized = false;
    }
    return this.native;
  }

  freeSlots(slots: number[]): void {
    for (const s of slots) this.slotUsed[s] = false;
  }

  private decoderFor(run: BatchRun): Decoder {
    return {
      vocabSize: this.host.vocabSize,
      nPositions: this.host.nPositions,
      open: (capacities, abort) => {
        this.host.alive();
        const slots = capacities.map((c) => this.takeSlot(c));
        return new VirtualSession(run, slots, abort, this.host.cacheBytes(capacities));
      },
    };
  }

  /**
   * A free slot for a sequence of up to `cap` tokens: the smallest free one
   * that holds it, else the largest free one grown, else a new one. A
   * changed slot is resized at the next native call (it holds nothing).
   */
  private takeSlot(cap: number): number {
    const N = this.host.nPositions;
    if (!(Number.isInteger(cap) && cap >= 1 && cap <= N))
      throw new RangeError(`Expected a capacity between 1 and n_positions = ${N} but received ${cap}`);
    let fit = -1;
    let largest = -1;
    for (let s = 0; s < this.slotCaps.length; s++) {
      if (this.slotUsed[s]) continue;
      if (this.slotCaps[s] >= cap && (fit < 0 || this.slotCaps[s] < this.slotCaps[fit])) fit = s;
      if (largest < 0 || this.slotCaps[s] > this.slotCaps[largest]) largest = s;
    }
    const want = Math.min(N, Math.ceil(cap / SLOT_GRANULE) * SLOT_GRANULE);
    let s = fit;
    if (s < 0 && largest >= 0) {
      s = largest;
      this.slotCaps[s] = want;
      this.resized = true;
    }
    if (s < 0) {
      s = this.slotCaps.length;
      this.slotCaps.push(want);
      this.slotUsed.push(false);
      this.resized = true;
    }
    this.slotUsed[s] = true;
    return s;
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason !== undefined ? signal.reason : new AbortedError('Generation was aborted');
}
