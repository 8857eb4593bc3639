/**
 * The HTTP server's errors, answered as OpenAI's error object:
 *   { "error": { "message", "type", "param", "code" } }
 * with the status that says what went wrong (400 a bad field, 401 no key,
 * 404 an unknown model or path, 413 a body over the limit, 429 a full queue,
 * 503 shutting down). Errors thrown by the library map onto the same shape.
 */
import { ArgumentRangeError, ArgumentTypeError, DisposedError, GptEngineError } from '../errors';
import { describe } from '../validate';

export type ApiErrorType = 'invalid_request_error' | 'rate_limit_error' | 'server_error';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** extra response headers (Retry-After, Allow) */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 for one request field: "Expected <what> for <field> but received <value>". */
export function badField(field: string, what: string, value: unknown, code: string | null = 'invalid_value'): ApiError {
  return new ApiError(400, `Expected ${what} for ${field} but received ${describe(value)}`, 'invalid_request_error', field, code);
}

/** 400 for a field this server does not implement (the value asks for something it would ignore). */
export function unsupportedField(field: string, value: unknown, hint = ''): ApiError {
  return new ApiError(
    400,
    `${field} is not supported by this server (received ${describe(value)})${hint ? `; ${hint}` : ''}`,
    'invalid_request_error',
    field,
    'unsupported_parameter',
  );
}

/** Server-side aborts that are not the client's doing (shutdown). */
export class ShutdownAbort extends Error {
  constructor() {
    super('The server is shutting down: the request was stopped before it finished');
    this.name = 'ShutdownAbort';
  }
}

/** Any error as the ApiError to answer with (library input errors are 400; the rest 5xx). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof ShutdownAbort) return new ApiError(503, e.message, 'server_error', null, 'shutting_down');
  if (e instanceof ArgumentRangeError || e instanceof ArgumentTypeError)
    return new ApiError(400, e.message, 'invalid_request_error', null, 'invalid_value');
  if (e instanceof DisposedError) return new ApiError(503, `The model is not available: ${e.message}`, 'server_error', null, 'model_unavailable');
  if (e instanceof GptEngineError) return new ApiError(500, `${e.code}: ${e.message}`, 'server_error', null, e.code.toLowerCase());
  const message = e instanceof Error ? e.message : String(e);
  return new ApiError(500, `Internal error: ${message.split('\n')[0]}`, 'server_error', null, 'internal_error');
}
