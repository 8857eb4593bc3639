/**
 * JSON from untrusted bytes (safetensors headers, config.json, state.json):
 * strict UTF-8, a nesting limit checked before JSON.parse, and BadFileError
 * messages that name what was being read.
 */
import { BadFileError } from './errors';

/**
 * Largest nesting depth of `[` / `{` in JSON text, stopping early once it
 * exceeds `limit`. Strings are skipped, so brackets inside names don't count.
 * JSON.parse itself copes with deep nesting, but the code that walks the
 * result should never meet a tree deeper than it expects.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decodes bytes as strict UTF-8 and parses them as JSON, with a nesting limit.
 * `what` describes the content for messages ("header of x.safetensors").
 * Throws BadFileError.
 */
export function parseJsonBytes(bytes: Uint8Array, what: string, maxDepth: number): unknown {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new BadFileError(`${what} is not valid UTF-8`);
  }
  if (jsonDepthExceeds(text, maxDepth))
    throw new BadFileError(`${what} nests JSON deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadFileError(`${what} is not valid JSON: ${(e as Error).message}`);
  }
}
