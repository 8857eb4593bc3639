/**
 * Serving a model over HTTP with OpenAI's completions API (docs/SERVING.md).
 */
export { serve, SERVE_DEFAULTS, SERVE_OPTION_KEYS } from './server';
export type { ServeOptions, ServeHandle } from './server';
export { DEFAULT_COMPLETION_TOKENS } from './completions';
export type { ServableModel } from './completions';
export { COMPLETION_FIELDS, MAX_STOP_STRINGS, parseCompletion } from './request';
export type { CompletionRequest } from './request';
export { ApiError } from './errors';
export type { ApiErrorBody, ApiErrorType } from './errors';
