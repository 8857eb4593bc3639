/**
 * gpt-engine's public API. Each module adds its exports below.
 */
export * from './errors';
export { loadAddon } from './native';
export * from './runtime';
