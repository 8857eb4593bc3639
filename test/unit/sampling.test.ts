// Sampling on crafted logits: argmax ties, temperature, top-k, top-p, their
// order, seeded reproducibility, and the text helpers (UTF-8 chunks, stops).
import {
  argmax,
  sampleToken,
  samplingDistribution,
  StopMatcher,
  TokenTextAssembler,
  topKIndices,
} from '../../lib/generate';
import { Rng } from '../../lib/rng';

const logp = (ps: number[]) => Float32Array.from(ps.map((p) => Math.log(p)));

function frequencies(row: Float32Array, opts: { temperature: number; topK: number; topP: number }, n: number, seed = 7) {
  const rng = new Rng(seed, 0);
  const counts = new Array(row.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(row, row.length, opts, rng)]++;
  return counts.map((c) => c / n);
}

describe('argmax', () => {
  test('picks the largest, lowest id on ties', () => {
    expect(argmax(Float32Array.of(1, 3, 2, 3))).toBe(1);
    expect(argmax(Float32Array.of(-5, -5, -5))).toBe(0);
    expect(argmax(Float32Array.of(NaN, 2, NaN, 2))).toBe(1);
  });
  test('temperature 0 is argmax and draws nothing from the generator', () => {
    const rng = new Rng(3, 0);
    const before = rng.getState();
    expect(sampleToken(Float32Array.of(0.5, 2, 2, 1), 4, { temperature: 0, topK: 0, topP: 1 }, rng)).toBe(1);
    expect(rng.getState()).toEqual(before);
  });
  test('all NaN is a NonFiniteError', () => {
    expect(() => argmax(Float32Array.of(NaN, NaN))).toThrow(/non-finite/);
  });
});

describe('top-k selection', () => {
  test('returns the k best in order, lowest id first on ties', () => {
    const row = Float32Array.of(1, 5, 3, 5, 0, 4, 3);
    expect(topKIndices(row, row.length, 3)).toEqual([1, 3, 5]);
    expect(topKIndices(row, row.length, 5)).toEqual([1, 3, 5, 2, 6]);
    expect(topKIndices(row, row.length, 7)).toEqual([1, 3, 5, 2, 6, 0, 4]);
  });
  test('matches a full sort on random rows', () => {
    const rng = new Rng(11, 0);
    for (let trial = 0; trial < 20; trial++) {
      const n = 50 + rng.nextInt(200);
      // few distinct values so ties are common
      const row = Float32Array.from({ length: n }, () => rng.nextInt(20));
      const k = 1 + rng.nextInt(n);
      const want = Array.from({ length: n }, (_, i) => i)
        .sort((a, b) => row[b] - row[a] || a - b)
        .slice(0, k);
      expect(topKIndices(row, n, k)).toEqual(want);
    }
  });
});

describe('sampling distribution', () => {
  const row = logp([0.5, 0.3, 0.15, 0.05]);

  test('temperature scales the logits before the softmax', () => {
    for (const T of [0.5, 1, 2]) {
      const d = samplingDistribution(row, 4, { temperature: T, topK: 0, topP: 1 });
      const want = [0.5, 0.3, 0.15, 0.05].map((p) => p ** (1 / T));
      const z = want.reduce((a, b) => a + b, 0);
      for (let i = 0; i < 4; i++) expect(d.weights[i] / d.total).toBeCloseTo(want[i] / z, 6);
    }
  });

  test('top-k keeps the k most likely', () => {
    const d = samplingDistribution(row, 4, { temperature: 1, topK: 2, topP: 1 });
    expect(d.ids).toEqual([0, 1]);
    expect(d.weights[0] / d.total).toBeCloseTo(0.5 / 0.8, 6);
  });

  test('top-p keeps the smallest prefix reaching p', () => {
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 0, topP: 0.5 }).ids).toEqual([0]);
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 0, topP: 0.79 }).ids).toEqual([0, 1]);
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 0, topP: 0.81 }).ids).toEqual([0, 1, 2]);
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 0, topP: 0.96 }).ids).toEqual([0, 1, 2, 3]);
  });

  test('top-p applies after temperature', () => {
    // T = 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 -> 0.695, 0.25, ...
    expect(samplingDistribution(row, 4, { temperature: 0.5, topK: 0, topP: 0.9 }).ids).toEqual([0, 1]);
    // T = 2 flattens them: sqrt -> 0.707, 0.548, 0.387, 0.224 (z 1.866): 0.379, 0.293, 0.207, 0.120
    expect(samplingDistribution(row, 4, { temperature: 2, topK: 0, topP: 0.8 }).ids).toEqual([0, 1, 2]);
  });

  test('top-p applies after top-k, on the renormalized top-k mass', () => {
    // top-k 3 renormalizes to 0.5/0.95, 0.3/0.95, 0.15/0.95 = 0.526, 0.316, 0.158
    // (0.5 + 0.3) / 0.95 = 0.842
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 3, topP: 0.85 }).ids).toEqual([0, 1, 2]);
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 3, topP: 0.84 }).ids).toEqual([0, 1]);
    // without top-k the same p keeps three: 0.5 + 0.3 < 0.84
    expect(samplingDistribution(row, 4, { temperature: 1, topK: 0, topP: 0.84 }).ids).toEqual([0, 1, 2]);
  });

  test('top-p over a large vocabulary finds the nucleus without sorting all of it', () => {
    const n = 50000;
    const rng = new Rng(5, 0);
    const big = Float32Array.from({ length: n }, () => rng.nextFloat() * 12 - 6);
    const d = samplingDistribution(big, n, { temperature: 0.7, topK: 0, topP: 0.9 });
    // reference: full sort
    const w = Array.from(big, (v) => Math.exp(v / 0.7));
    const z = w.reduce((a, b) => a + b, 0);
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => w[b] - w[a] || a - b);
    const want: number[] = [];
    let mass = 0;
    for (const i of order) {
      want.push(i);
      mass += w[i];
      if (mass >= 0.9 * z) break;
    }
    expect(d.ids).toEqual(want);
  });

  test('sampled frequencies follow the filtered distribution', () => {
    const n = 20000;
    const f = frequencies(row, { temperature: 1, topK: 0, topP: 1 }, n);
    [0.5, 0.3, 0.15, 0.05].forEach((p, i) => expect(Math.abs(f[i] - p)).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n)));
    const g = frequencies(row, { temperature: 1, topK: 3, topP: 0.84 }, n);
    expect(g[2]).toBe(0);
    expect(g[3]).toBe(0);
    expect(Math.abs(g[0] - 0.5 / 0.8)).toBeLessThan(0.02);
  });

  test('top-k never yields a token outside the k best', () => {
    const rng = new Rng(1, 0);
    const big = Float32Array.from({ length: 1000 }, () => rng.nextFloat() * 4);
    const best = new Set(topKIndices(big, 1000, 5));
    const r = new Rng(2, 0);
    for (let i = 0; i < 2000; i++) expect(best.has(sampleToken(big, 1000, { temperature: 1.5, topK: 5, topP: 1 }, r))).toBe(true);
  });

  test('a seed makes sampling reproducible; another seed or stream differs', () => {
    const rng = new Rng(9, 0);
    const big = Float32Array.from({ length: 500 }, () => rng.nextFloat() * 3);
    const draw = (seed: number, stream: number) => {
      const r = new Rng(seed, stream);
      return Array.from({ length: 50 }, () => sampleToken(big, 500, { temperature: 1, topK: 0, topP: 1 }, r));
    };
    expect(draw(42, 0)).toEqual(draw(42, 0));
    expect(draw(42, 0)).not.toEqual(draw(43, 0));
    expect(draw(42, 0)).not.toEqual(draw(42, 1));
  });

  test('-Infinity logits are never sampled', () => {
    const r = new Rng(4, 0);
    const masked = Float32Array.of(-Infinity, 0, -Infinity, 0);
    for (let i = 0; i < 200; i++) expect([1, 3]).toContain(sampleToken(masked, 4, { temperature: 1, topK: 0, topP: 1 }, r));
  });
});

// A byte-level codec: token i is byte i (like lib/tokenizer's 'byte').
const byteCodec = {
  encode: (t: string) => Array.from(new TextEncoder().encode(t)),
  decode: (ids: ArrayLike<number>) => new TextDecoder().decode(Uint8Array.from(ids as number[])),
};

describe('UTF-8-safe chunks', () => {
  test('multi-byte characters are released whole', () => {
    const a = new TokenTextAssembler(byteCodec);
    const text = 'a€b😀ç';
    const chunks: string[] = [];
    for (const b of new TextEncoder().encode(text)) chunks.push(a.push(b));
    chunks.push(a.flush());
    expect(chunks.join('')).toBe(text);
    for (const c of chunks) expect(c).not.toContain('\uFFFD');
    // the 4-byte emoji comes out in one chunk
    expect(chunks).toContain('😀');
  });
  test('with tokenBytes, a streaming decoder assembles the text and decode() is never called', () => {
    const pieces = [Uint8Array.of(0x61, 0xf0, 0x9f), Uint8Array.of(0x98), Uint8Array.of(0x80, 0xe2, 0x82), Uint8Array.of(0xac)];
    const a = new TokenTextAssembler({
      encode: () => [],
      decode: () => {
        throw new Error('decode called');
      },
      tokenBytes: (t) => pieces[t],
    });
    expect([0, 1, 2, 3].map((t) => a.push(t))).toEqual(['a', '', '😀', '€']);
    expect(a.flush()).toBe('');
    const b = new TokenTextAssembler({ encode: () => [], decode: () => '', tokenBytes: (t) => pieces[t] });
    expect(b.push(0)).toBe('a');
    expect(b.flush()).toBe('\uFFFD');
  });
  test('invalid bytes still come out (as U+FFFD) and concatenate to the full decoding', () => {
    const a = new TokenTextAssembler(byteCodec);
    const bytes = [0x61, 0x80, 0x62, 0xe2, 0x82];
    let out = '';
    for (const b of bytes) out += a.push(b);
    out += a.flush();
    expect(out).toBe(byteCodec.decode(bytes));
  });
});

describe('stop strings', () => {
  test('a stop string split over pushes ends the text before it', () => {
    const m = new StopMatcher(['\n\n', 'END']);
    expect(m.push('hello')).toEqual({ emit: 'hello', stopped: false });
    expect(m.push(' wor')).toEqual({ emit: ' wor', stopped: false });
    expect(m.push('ld E')).toEqual({ emit: 'ld ', stopped: false });
    expect(m.push('N')).toEqual({ emit: '', stopped: false });
    expect(m.push('D and more')).toEqual({ emit: '', stopped: true });
  });
  test('held text that does not become a stop is released', () => {
    const m = new StopMatcher(['\n\n']);
    expect(m.push('a\n')).toEqual({ emit: 'a', stopped: false });
    expect(m.push('b')).toEqual({ emit: '\nb', stopped: false });
    expect(m.push('\n')).toEqual({ emit: '', stopped: false });
    expect(m.flush()).toBe('\n');
  });
  test('the earliest of several stops wins', () => {
    const m = new StopMatcher(['y', 'xyz']);
    expect(m.push('abxyz')).toEqual({ emit: 'ab', stopped: true });
    const m2 = new StopMatcher(['yz', 'x']);
    expect(m2.push('abyzx')).toEqual({ emit: 'ab', stopped: true });
  });
  test('no stops: everything passes', () => {
    const m = new StopMatcher([]);
    expect(m.push('abc')).toEqual({ emit: 'abc', stopped: false });
  });
});
