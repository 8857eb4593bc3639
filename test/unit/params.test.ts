import { PRESETS, presetConfig, GPTConfig } from '../../lib/config';
import { exactParameterCount, formulaParameterCount, parameterShares, trainingMemory, activationBytes, paddedVocab } from '../../lib/params';

// The GPT-3 paper's table (V = 50257, n_ctx = 2048), with its shapes as printed.
const table: [string, number, number, number, number][] = [
  ['Small', 12, 12, 768, 125187840],
  ['Medium', 24, 16, 1024, 355771392],
  ['Large', 24, 16, 1536, 760149504],
  ['XL', 24, 24, 2048, 1315522560],
  ['2.7B', 32, 32, 2560, 2651220480],
  ['6.7B', 32, 32, 4096, 6657871872],
  ['13B', 40, 40, 5140, 12952106100],
  ['175B', 96, 96, 12288, 174599516160],
];

function shape(L: number, H: number, d: number, nctx = 2048): GPTConfig {
  return { n_layer: L, n_head: H, n_embd: d, n_positions: nctx, vocab_size: 50257, layer_norm_epsilon: 1e-5, attention_pattern: 'dense', attention_window: null };
}

describe('parameter accounting', () => {
  test.each(table)('GPT-3 %s reproduces the paper', (_name, L, H, d, expected) => {
    expect(formulaParameterCount(shape(L, H, d))).toBe(expected);
  });

  test('the gpt3-* presets count as the paper', () => {
    const names = ['gpt3-small', 'gpt3-medium', 'gpt3-large', 'gpt3-xl', 'gpt3-2.7b', 'gpt3-6.7b', 'gpt3-13b', 'gpt3-175b'];
    names.forEach((n, i) => expect(formulaParameterCount(presetConfig(n))).toBe(table[i][4]));
  });

  test('GPT-2 small has exactly 124,439,808 tensors elements', () => {
    expect(exactParameterCount(presetConfig('gpt2'))).toBe(124439808);
    expect(exactParameterCount(presetConfig('gpt2')) - formulaParameterCount(presetConfig('gpt2'))).toBe(4 * 12 * 768 + 2 * 768);
  });

  test('shares for Small and 175B match the seed table', () => {
    const s = parameterShares(shape(12, 12, 768));
    expect((100 * s.attention).toFixed(2)).toBe('22.64');
    expect((100 * s.feedForward).toFixed(2)).toBe('45.27');
    expect((100 * s.tokenEmbedding).toFixed(2)).toBe('30.83');
    expect((100 * s.positionEmbedding).toFixed(2)).toBe('1.26');
    const b = parameterShares(shape(96, 96, 12288));
    expect((100 * b.attention).toFixed(2)).toBe('33.21');
    expect((100 * b.feedForward).toFixed(2)).toBe('66.42');
    expect((100 * b.tokenEmbedding).toFixed(2)).toBe('0.35');
    expect((100 * b.positionEmbedding).toFixed(2)).toBe('0.01');
    expect(s.attention + s.feedForward + s.tokenEmbedding + s.positionEmbedding).toBeCloseTo(1, 12);
  });

  test('training memory: 16 bytes per parameter in fp32, 18 with a bf16 copy', () => {
    const c = presetConfig('gpt2');
    const n = exactParameterCount(c) + (paddedVocab(c.vocab_size) - c.vocab_size) * c.n_embd;
    expect(trainingMemory(c).fp32).toBe(16 * n);
    expect(trainingMemory(c).bf16).toBe(18 * n);
  });

  test('activation memory grows linearly in batch', () => {
    const c = presetConfig('tiny');
    expect(activationBytes(c, 4, 64)).toBe(4 * activationBytes(c, 1, 64));
  });

  test('paddedVocab rounds up to 64', () => {
    expect(paddedVocab(50257)).toBe(50304);
    expect(paddedVocab(64)).toBe(64);
    expect(paddedVocab(1)).toBe(64);
  });

  test('every preset has a description', () => {
    for (const p of Object.values(PRESETS)) expect(p.description.length).toBeGreaterThan(3);
  });
});
