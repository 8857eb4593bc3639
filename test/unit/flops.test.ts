import { presetConfig } from '../../lib/config';
import { attentionFlops, attentionPairs, decodeFlopsPerToken, forwardFlopsPerToken, matmulParameters, trainingFlopsPerToken } from '../../lib/flops';
import { exactParameterCount } from '../../lib/params';

function bruteForcePairs(T: number, w: number | null): number {
  let n = 0;
  for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) if (w === null || i - w < j) n++;
  return n;
}

describe('FLOP accounting', () => {
  test.each([
    [1, null],
    [7, null],
    [64, null],
    [7, 1],
    [7, 3],
    [7, 7],
    [7, 20],
    [100, 17],
    [4096, 256],
  ] as [number, number | null][])('pairs T=%d w=%s match brute force', (T, w) => {
    expect(attentionPairs(T, w === null ? 'dense' : 'banded', w)).toBe(bruteForcePairs(T, w));
  });

  test('attention FLOPs: 4*D per pair forward, backward 2.5x', () => {
    const f = attentionFlops({ batch: 2, heads: 3, seq: 10, headDim: 16, pattern: 'dense' });
    expect(f.forward).toBe(4 * 16 * 55 * 6);
    expect(f.backward).toBe(2.5 * f.forward);
    expect(f.total).toBe(3.5 * f.forward);
  });

  test('training FLOPs per token: 6 x params except wpe plus attention', () => {
    const c = presetConfig('gpt2');
    expect(matmulParameters(c)).toBe(exactParameterCount(c) - 1024 * 768);
    const T = 1024;
    const attn = 12 * 4 * 768 * ((T + 1) / 2) * 3.5;
    expect(trainingFlopsPerToken(c, T)).toBeCloseTo(6 * matmulParameters(c) + attn, 0);
    expect(forwardFlopsPerToken(c, T)).toBeCloseTo(2 * matmulParameters(c) + attn / 3.5, 0);
  });

  test('banded layers are counted by their band', () => {
    const c = presetConfig('gpt3-small'); // alternating, w = 256
    const T = 2048;
    const dense = (4 * 768 * attentionPairs(T, 'dense')) / T;
    const band = (4 * 768 * attentionPairs(T, 'banded', 256)) / T;
    expect(forwardFlopsPerToken(c, T)).toBeCloseTo(2 * matmulParameters(c) + 6 * dense + 6 * band, 0);
  });

  test('decode FLOPs grow with position until the band is full', () => {
    const c = presetConfig('gpt3-small');
    const a = decodeFlopsPerToken(c, 1000);
    const b = decodeFlopsPerToken(c, 1001);
    // 6 dense layers see one more key; 6 banded layers stay at w
    expect(b - a).toBe(6 * 4 * 768);
  });
});
