/**
 * Named error classes with a `code` (docs/ARCHITECTURE.md "Errors"). Validation errors keep
 * the built-in TypeError / RangeError as their base so `instanceof TypeError`
 * still works; everything else is a GptEngineError.
 */

export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'BAD_FILE'
  | 'OUT_OF_MEMORY'
  | 'NO_GPU'
  | 'NONFINITE'
  | 'DISPOSED'
  | 'ABORTED'
  | 'INTERNAL';

export class GptEngineError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A value of the wrong type (code INVALID_ARGUMENT). */
export class ArgumentTypeError extends TypeError {
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentTypeError';
  }
}

/** A value of the right type but outside what is allowed (code INVALID_ARGUMENT). */
export class ArgumentRangeError extends RangeError {
  readonly code = 'INVALID_ARGUMENT' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentRangeError';
  }
}

/** The base of a GptEngineError subclass whose every instance has `code`. */
function withCode(code: ErrorCode) {
  return class extends GptEngineError {
    constructor(message: string, options?: { cause?: unknown }) {
      super(code, message, options);
    }
  };
}

export class BadFileError extends withCode('BAD_FILE') {}
export class OutOfMemoryError extends withCode('OUT_OF_MEMORY') {}
export class NoGpuError extends withCode('NO_GPU') {}
export class NonFiniteError extends withCode('NONFINITE') {}
export class DisposedError extends withCode('DISPOSED') {}
export class AbortedError extends withCode('ABORTED') {}
export class InternalError extends withCode('INTERNAL') {}

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => Error> = {
  BAD_FILE: BadFileError,
  OUT_OF_MEMORY: OutOfMemoryError,
  NO_GPU: NoGpuError,
  NONFINITE: NonFiniteError,
  DISPOSED: DisposedError,
  ABORTED: AbortedError,
  INTERNAL: InternalError,
};

/**
 * Turns an error thrown by the addon (a plain Error with a `code`) into the
 * named class, with the stack of the JS caller that started the call
 * (`callerStack`), so the trace points at user code rather than the addon.
 */
export function fromNative(err: unknown, callerStack?: string): Error {
  // Errors made by the addon belong to the realm it was loaded in, which is
  // not the caller's under jest or in vm contexts: test the tag, not the class.
  if (!(err instanceof Error) && Object.prototype.toString.call(err) !== '[object Error]')
    return new InternalError(`native call failed: ${String(err)}`);
  if (!(err instanceof Error)) return fromNative(Object.assign(new Error((err as Error).message), { code: (err as { code?: unknown }).code }), callerStack);
  if (err instanceof GptEngineError || err instanceof ArgumentTypeError || err instanceof ArgumentRangeError) return err;
  const code = (err as { code?: unknown }).code;
  let out: Error;
  if (code === 'INVALID_ARGUMENT') out = new ArgumentRangeError(err.message);
  else if (typeof code === 'string' && byCode[code]) out = new byCode[code](err.message, { cause: err });
  else return err;
  if (callerStack) stitchStack(out, callerStack);
  return out;
}

/**
 * Gives `err` the frames of `callerStack` (the stack of an Error made where
 * a call started, before it crossed a queue or the addon), so its trace
 * points at the user's code. `skipFrames` drops that many frames from the
 * top of `callerStack` (the helpers that captured it).
 */
export function stitchStack(err: Error, callerStack: string | undefined, skipFrames = 0): void {
  if (!callerStack) return;
  const frames = callerStack.split('\n').slice(1 + skipFrames);
  err.stack = `${err.name}: ${err.message}\n${frames.join('\n')}`;
}

/** Runs an async native call, converting its errors (see fromNative). */
export async function callNative<T>(fn: () => Promise<T>): Promise<T> {
  const caller = new Error().stack;
  try {
    return await fn();
  } catch (e) {
    throw fromNative(e, caller);
  }
}

/** Runs a synchronous native call, converting its errors. */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}
