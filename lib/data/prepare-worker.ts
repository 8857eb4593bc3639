/**
 * A tokenizing worker of `prepare` (started by lib/data/pool.ts): receives
 * units of text chunks, returns their tokens, one typed array per unit with
 * the length of each chunk's part. It touches no file; the main thread reads
 * the inputs and writes the outputs in order.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { getTokenizer, TokenizerName } from '../tokenizer';
import { encodeChunk } from './segment';

const tok = getTokenizer((workerData as { tokenizer: TokenizerName }).tokenizer);
const port = parentPort!;

port.on('message', (m: { id: number; texts: string[] }) => {
  try {
    const parts = m.texts.map((t) => encodeChunk(tok, t));
    let n = 0;
    for (const p of parts) n += p.length;
    const tokens = tok.vocabSize <= 65536 ? new Uint16Array(n) : new Uint32Array(n);
    const lengths = new Uint32Array(parts.length);
    n = 0;
    parts.forEach((p, i) => {
      tokens.set(p, n);
      lengths[i] = p.length;
      n += p.length;
    });
    port.postMessage({ id: m.id, tokens, lengths }, [tokens.buffer, lengths.buffer]);
  } catch (e) {
    port.postMessage({ id: m.id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
});
