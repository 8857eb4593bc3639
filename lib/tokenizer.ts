/**
 * Tokenizers: `gpt2` (GPT-2's byte-level BPE through gpt-tokenizer's
 * r50k_base, vocabulary 50257, id 50256 = <|endoftext|>) and `byte` (one
 * token per UTF-8 byte, vocabulary 256).
 *
 * gpt-tokenizer 4.0 throws on "<|endoftext|>" by default and, with
 * allowedSpecial, only recognizes it at the start of the text or after
 * another special token (TOOLCHAIN "gpt-tokenizer 4.0"). So the marker is
 * never handed to it: encode() splits the text on the marker itself and puts
 * 50256 between the pieces. The byte tokenizer has no special tokens: the
 * marker is just its 13 bytes there.
 */
import * as r50k from 'gpt-tokenizer/encoding/r50k_base';
import { ArgumentRangeError } from './errors';
import type { TokenizerName } from './config';
import { describe, expectOneOf, expectString } from './validate';

export type { TokenizerName } from './config';

export const TOKENIZER_NAMES: readonly TokenizerName[] = ['gpt2', 'byte'];
export const END_OF_TEXT = '<|endoftext|>';
export const GPT2_EOT = 50256;

/** Ids recorded in token files (docs/ARCHITECTURE.md "token data"). */
export const TOKENIZER_IDS: Readonly<Record<TokenizerName, number>> = { gpt2: 1, byte: 2 };

export interface Tokenizer {
  readonly name: TokenizerName;
  /** id stored in token file headers */
  readonly id: number;
  readonly vocabSize: number;
  /** the token placed between documents, or null when the tokenizer has none */
  readonly eot: number | null;
  encode(text: string): Int32Array;
  decode(tokens: ArrayLike<number>): string;
  countTokens(text: string): number;
}

// disallowedSpecial empty: special-looking text other than END_OF_TEXT is plain text.
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** Each END_OF_TEXT is the token GPT2_EOT; the text between them is encoded as plain text. */
function gpt2Encode(text: string): number[] {
  const out: number[] = [];
  text.split(END_OF_TEXT).forEach((part, i) => {
    if (i > 0) out.push(GPT2_EOT);
    if (part.length) for (const t of r50k.encode(part, PLAIN_TEXT)) out.push(t);
  });
  return out;
}

const gpt2Tokenizer: Tokenizer = {
  name: 'gpt2',
  id: TOKENIZER_IDS.gpt2,
  vocabSize: 50257,
  eot: GPT2_EOT,
  encode: (text) => Int32Array.from(gpt2Encode(text)),
  decode: (tokens) => {
    checkIds(tokens, 50257, 'gpt2');
    return r50k.decode(Array.from(tokens));
  },
  countTokens: (text) => {
    // gpt2Encode's length: one token per END_OF_TEXT, plus the plain text between them.
    const parts = text.split(END_OF_TEXT);
    return parts.reduce((n, part) => n + (part.length ? r50k.countTokens(part, PLAIN_TEXT) : 0), parts.length - 1);
  },
};

const byteTokenizer: Tokenizer = {
  name: 'byte',
  id: TOKENIZER_IDS.byte,
  vocabSize: 256,
  eot: null,
  encode: (text) => Int32Array.from(Buffer.from(text, 'utf8')),
  decode: (tokens) => {
    checkIds(tokens, 256, 'byte');
    return Buffer.from(Uint8Array.from(tokens)).toString('utf8');
  },
  countTokens: (text) => Buffer.byteLength(text, 'utf8'),
};

function checkIds(tokens: ArrayLike<number>, vocab: number, name: string): void {
  if (tokens === null || typeof tokens !== 'object' || typeof (tokens as { length?: unknown }).length !== 'number')
    throw new ArgumentRangeError(`Expected an array of token ids for tokens but received ${describe(tokens)}`);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!Number.isInteger(t) || t < 0 || t >= vocab)
      throw new ArgumentRangeError(
        `Expected token ids between 0 and ${vocab - 1} (the ${name} tokenizer) for tokens[${i}] but received ${describe(t)}`,
      );
  }
}

/** The tokenizer with this name. */
export function getTokenizer(name: TokenizerName = 'gpt2'): Tokenizer {
  const n = expectOneOf('tokenizer', name, TOKENIZER_NAMES);
  return n === 'gpt2' ? gpt2Tokenizer : byteTokenizer;
}

/** The tokenizer recorded under this id in a token file, or undefined. */
export function tokenizerById(id: number): Tokenizer | undefined {
  if (id === TOKENIZER_IDS.gpt2) return gpt2Tokenizer;
  if (id === TOKENIZER_IDS.byte) return byteTokenizer;
  return undefined;
}

/** Text to token ids. "<|endoftext|>" becomes 50256 with gpt2. */
export function encode(text: string, tokenizer: TokenizerName = 'gpt2'): Int32Array {
  expectString('text', text);
  return getTokenizer(tokenizer).encode(text);
}

/** Token ids to text. */
export function decode(tokens: ArrayLike<number>, tokenizer: TokenizerName = 'gpt2'): string {
  return getTokenizer(tokenizer).decode(tokens);
}

/** Number of tokens `encode` would return. */
export function countTokens(text: string, tokenizer: TokenizerName = 'gpt2'): number {
  expectString('text', text);
  return getTokenizer(tokenizer).countTokens(text);
}
