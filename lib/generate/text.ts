/**
 * From sampled tokens to text: UTF-8-safe chunks (TokenTextAssembler), stop
 * strings (StopMatcher), and the TokenCodec of each of the engine's
 * tokenizers, with the bytes of every token for streaming.
 */
import { TextDecoder, TextEncoder } from 'node:util';
import type { TokenizerName } from '../config';
import { END_OF_TEXT, getTokenizer, GPT2_EOT } from '../tokenizer';
import { rangeError } from '../validate';
import { TokenCodec } from './types';

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/**
 * Turns a stream of token ids into text chunks that end on character
 * boundaries (byte-level vocabularies split UTF-8 characters over tokens).
 *
 * With codec.tokenBytes, bytes go through a streaming UTF-8 decoder, which
 * releases only complete characters. Without it, the pending tokens are
 * decoded together and their text is released only when it does not end in
 * U+FFFD (the mark of an incomplete character); since UTF-8 decoding
 * restarts cleanly after a complete character, the chunks concatenate to the
 * decoding of all tokens either way.
 */
export class TokenTextAssembler {
  private pending: number[] = [];
  private readonly utf8?: TextDecoder;
  constructor(private readonly codec: TokenCodec) {
    if (codec.tokenBytes) this.utf8 = new TextDecoder('utf-8');
  }

  /** Adds a token; returns the text that became final ('' when none). */
  push(token: number): string {
    if (this.utf8) return this.utf8.decode(this.codec.tokenBytes!(token), { stream: true });
    this.pending.push(token);
    const text = this.codec.decode(this.pending);
    if (text.length > 0 && text.charCodeAt(text.length - 1) === 0xfffd) return '';
    this.pending = [];
    return text;
  }

  /** At the end: whatever is left, replacement characters included. */
  flush(): string {
    if (this.utf8) return this.utf8.decode();
    if (this.pending.length === 0) return '';
    const text = this.codec.decode(this.pending);
    this.pending = [];
    return text;
  }
}

/**
 * Holds back text that might be the start of a stop string and finds the
 * first stop string in the text. Emitted text never contains the start of a
 * match, so any match begins inside the held text.
 */
export class StopMatcher {
  private held = '';
  constructor(private readonly stops: string[]) {}

  /**
   * Adds text. Returns what can be emitted, and whether a stop string was
   * found (the emitted text then ends just before it).
   */
  push(text: string): { emit: string; stopped: boolean } {
    let buf = this.held + text;
    if (this.stops.length === 0) {
      this.held = '';
      return { emit: buf, stopped: false };
    }
    let first = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      this.held = '';
      return { emit: buf.slice(0, first), stopped: true };
    }
    // Keep the longest suffix that is a proper prefix of a stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let len = Math.min(s.length - 1, buf.length); len > keep; len--) {
        if (buf.endsWith(s.slice(0, len))) {
          keep = len;
          break;
        }
      }
    }
    let cut = buf.length - keep;
    // Never split a surrogate pair.
    if (cut > 0 && cut < buf.length && isHighSurrogate(buf.charCodeAt(cut - 1))) cut--;
    this.held = buf.slice(cut);
    buf = buf.slice(0, cut);
    return { emit: buf, stopped: false };
  }

  /** At the end without a stop: the held text. */
  flush(): string {
    const h = this.held;
    this.held = '';
    return h;
  }
}

let gpt2Bytes: Uint8Array[] | undefined;

/** The bytes of every GPT-2 token (gpt-tokenizer's r50k_base table; 50256 is <|endoftext|>). */
function gpt2TokenBytes(): Uint8Array[] {
  if (!gpt2Bytes) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ranks = (require('gpt-tokenizer/cjs/bpeRanks/r50k_base') as { default: (string | number[])[] }).default;
    const enc = new TextEncoder();
    gpt2Bytes = ranks.map((t) => (typeof t === 'string' ? enc.encode(t) : Uint8Array.from(t)));
    gpt2Bytes[GPT2_EOT] = enc.encode(END_OF_TEXT);
  }
  return gpt2Bytes;
}

/** A TokenCodec for one of the engine's tokenizers, with token bytes for UTF-8-safe streaming. */
export function tokenCodec(name: TokenizerName): TokenCodec {
  const tok = getTokenizer(name);
  const codec: TokenCodec = {
    encode: (t) => tok.encode(t),
    decode: (ids) => tok.decode(ids),
    eosToken: tok.eot ?? undefined,
  };
  if (name === 'byte') codec.tokenBytes = (id) => Uint8Array.of(id);
  else if (name === 'gpt2') {
    const table = gpt2TokenBytes();
    codec.tokenBytes = (id) => {
      const b = table[id];
      if (!b) throw rangeError(`a token id in [0, ${table.length})`, 'token', id);
      return b;
    };
  }
  return codec;
}
