/**
 * What GPT checks of the inputs users hand it, before any native work:
 * batch shapes, token and target ids against the vocabulary, tensor maps
 * against the model's tensor names and shapes (Hugging Face GPT-2 names,
 * unpadded), and the options of forwardBackward() and step().
 */
import { ArgumentRangeError } from '../errors';
import type { BatchShape, ForwardBackwardOptions, StepOptions } from '../model';
import {
  checkKnownKeys,
  describe,
  didYouMean,
  expectBoolean,
  expectInteger,
  expectNumber,
  expectObject,
  rangeError,
  typeError,
} from '../validate';

const STEP_KEYS = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'gradClip'] as const;

/** True for a typed array of that kind from any realm (jest's vm contexts, worker-made arrays). */
export function isTyped(x: unknown, kind: 'Float32Array' | 'Int32Array' | 'Uint32Array'): boolean {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === `[object ${kind}]`;
}

/** The addon makes arrays in the main realm; view them as this realm's Float32Array (no copy). */
export function local(a: Float32Array): Float32Array {
  if (a instanceof Float32Array) return a;
  const v = a as { buffer: ArrayBuffer; byteOffset: number; length: number };
  return new Float32Array(v.buffer, v.byteOffset, v.length);
}

/** A batch shape { batch, seq, docEot? } with seq within the model's context and docEot a token id. */
export function checkBatchShape(shape: BatchShape, nPositions: number, vocabSize: number): BatchShape {
  const o = expectObject('shape', shape);
  checkKnownKeys('shape', o, ['batch', 'seq', 'docEot']);
  const batch = expectInteger('batch', shape.batch, { min: 1, max: 1 << 24 });
  const seq = expectInteger('seq', shape.seq, { min: 1 });
  if (seq > nPositions) throw rangeError(`an integer between 1 and ${nPositions} (n_positions)`, 'seq', seq);
  if (shape.docEot === undefined) return { batch, seq };
  const docEot = expectInteger('docEot', shape.docEot, { min: 0, max: vocabSize - 1 });
  return { batch, seq, docEot };
}

/**
 * Validates `n` ids in [0, vocab) (and -1, ignored, when `allowIgnore`: the
 * targets) and returns a private Int32Array copy, so later changes to the
 * caller's array cannot race the native call.
 */
export function checkIds(
  field: string,
  ids: unknown,
  shape: BatchShape,
  vocab: number,
  allowIgnore: boolean,
): Int32Array {
  const n = shape.batch * shape.seq;
  if (!isTyped(ids, 'Int32Array') && !(allowIgnore ? false : isTyped(ids, 'Uint32Array')))
    throw typeError(allowIgnore ? 'an Int32Array' : 'an Int32Array or Uint32Array', field, ids);
  const arr = ids as Int32Array | Uint32Array;
  if (arr.length !== n)
    throw rangeError(`an array of batch * seq = ${shape.batch} * ${shape.seq} = ${n} ids`, field, arr);
  const lo = allowIgnore ? -1 : 0;
  for (let i = 0; i < n; i++) {
    const v = arr[i];
    if (v < lo || v >= vocab) {
      const what = allowIgnore ? `ids in [0, ${vocab}) or -1 (ignored)` : `token ids in [0, ${vocab})`;
      throw new ArgumentRangeError(`Expected ${what} for ${field} but received ${v} at index ${i}`);
    }
  }
  return Int32Array.from(arr);
}

/**
 * Orders a user's tensor map (a Map or a plain object) into the model's
 * tensor order, checking names and lengths. Every tensor must be given
 * unless `partial`; missing ones are undefined in the result.
 */
export function orderTensors(
  field: string,
  tensors: Map<string, Float32Array> | Record<string, Float32Array>,
  names: readonly string[],
  shapes: readonly number[][],
  partial: boolean,
): (Float32Array | undefined)[] {
  if (!(tensors instanceof Map)) expectObject(field, tensors);
  const entries: [string, unknown][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const index = new Map(names.map((n, i) => [n, i]));
  const out: (Float32Array | undefined)[] = new Array(names.length).fill(undefined);
  for (const [name, arr] of entries) {
    const i = index.get(name);
    if (i === undefined)
      throw new ArgumentRangeError(
        `Unknown tensor ${JSON.stringify(name)} in ${field}${didYouMean(name, names)}; expected Hugging Face GPT-2 names such as wte.weight, h.0.attn.c_attn.weight`,
      );
    const shape = shapes[i];
    const len = shape.reduce((a, b) => a * b, 1);
    if (!isTyped(arr, 'Float32Array')) throw typeError('a Float32Array', `${field}["${name}"]`, arr);
    if ((arr as Float32Array).length !== len)
      throw new ArgumentRangeError(
        `Expected a Float32Array of ${len} values (shape [${shape.join(', ')}]) for ${field}["${name}"] but received ${describe(arr)}`,
      );
    out[i] = arr as Float32Array;
  }
  if (!partial) {
    const missing = names.filter((_, i) => out[i] === undefined);
    if (missing.length)
      throw new ArgumentRangeError(
        `Expected every tensor in ${field} but ${missing.length} are missing (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''})`,
      );
  }
  return out;
}

/**
 * Validates step() options. Only the keys given are returned: the core
 * holds the AdamW defaults (native/core/model.h) and fills the rest.
 */
export function checkStepOptions(opts: StepOptions): StepOptions {
  const o = expectObject('options', opts);
  checkKnownKeys('step options', o, STEP_KEYS);
  const out: StepOptions = { lr: expectNumber('lr', opts.lr, { min: 0 }) };
  if (opts.beta1 !== undefined) out.beta1 = expectNumber('beta1', opts.beta1, { min: 0, max: 0.999999 });
  if (opts.beta2 !== undefined) out.beta2 = expectNumber('beta2', opts.beta2, { min: 0, max: 0.999999999 });
  if (opts.eps !== undefined) out.eps = expectNumber('eps', opts.eps, { gt: 0 });
  if (opts.weightDecay !== undefined) out.weightDecay = expectNumber('weightDecay', opts.weightDecay, { min: 0 });
  if (opts.gradClip !== undefined) out.gradClip = expectNumber('gradClip', opts.gradClip, { min: 0 });
  return out;
}

/** Validates forwardBackward() options; returns whether the loss stays on the device. */
export function checkDeferLoss(opts: ForwardBackwardOptions): boolean {
  const o = expectObject('options', opts);
  checkKnownKeys('forwardBackward options', o, ['deferLoss']);
  return opts.deferLoss === undefined ? false : expectBoolean('deferLoss', opts.deferLoss);
}
