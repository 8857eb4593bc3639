import {
  assertBuildable,
  fromHuggingFaceConfig,
  layerPatterns,
  mergeConfig,
  parseConfigJson,
  presetConfig,
  toConfigJson,
  validateConfig,
  getPreset,
} from '../../lib/config';
import { ArgumentRangeError, ArgumentTypeError } from '../../lib/errors';

const base = () => ({ ...presetConfig('tiny') });

describe('validateConfig', () => {
  test('accepts every buildable preset', () => {
    for (const n of ['tiny', 'small', 'gpt2', 'gpt2-xl', 'gpt3-small', 'gpt3-xl', 'gpt3-175b']) {
      expect(() => validateConfig(presetConfig(n))).not.toThrow();
    }
  });

  test('unknown key with a did-you-mean hint', () => {
    expect(() => validateConfig({ ...base(), n_layers: 3 })).toThrow(
      /Unknown key "n_layers" in config \(did you mean "n_layer"\?\)/,
    );
  });

  test('non-integer is a RangeError with the value and its type', () => {
    const e = captured(() => validateConfig({ ...base(), n_head: 1.5 }));
    expect(e).toBeInstanceOf(ArgumentRangeError);
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe('Expected a positive integer for n_head but received 1.5 (number)');
  });

  test('wrong type is a TypeError', () => {
    const e = captured(() => validateConfig({ ...base(), n_embd: '128' }));
    expect(e).toBeInstanceOf(ArgumentTypeError);
    expect(e).toBeInstanceOf(TypeError);
    expect(e.message).toBe('Expected a positive integer for n_embd but received "128" (string)');
  });

  test('n_embd not divisible by n_head', () => {
    expect(() => validateConfig({ ...base(), n_head: 3 })).toThrow(
      'Expected n_embd to be divisible by n_head but received n_embd 128 and n_head 3 (128 / 3 = 42.667)',
    );
  });

  test('window < 1', () => {
    expect(() => validateConfig({ ...base(), attention_pattern: 'banded', attention_window: 0 })).toThrow(
      'Expected a positive integer for attention_window but received 0 (number)',
    );
  });

  test('banded layers need a window', () => {
    expect(() => validateConfig({ ...base(), attention_pattern: 'alternating', attention_window: null })).toThrow(
      'Expected a positive integer (the pattern has banded layers) for attention_window but received null',
    );
  });

  test('pattern array of the wrong length', () => {
    expect(() => validateConfig({ ...base(), attention_pattern: ['dense', 'banded'], attention_window: 4 })).toThrow(
      'Expected an array of 4 entries (one per layer, n_layer = 4) for attention_pattern but received an array of length 2',
    );
  });

  test('bad pattern name has a hint', () => {
    expect(() => validateConfig({ ...base(), attention_pattern: 'alternate' })).toThrow(
      /Expected one of "dense", "banded", "alternating" for attention_pattern but received "alternate" \(string\) \(did you mean "alternating"\?\)/,
    );
    expect(() => validateConfig({ ...base(), attention_pattern: ['dense', 'dense', 'local', 'dense'] })).toThrow(
      /for attention_pattern\[2\] but received "local"/,
    );
  });

  test('missing key', () => {
    const c: Record<string, unknown> = base();
    delete c.vocab_size;
    expect(() => validateConfig(c)).toThrow('Expected a value for vocab_size in config but it is missing');
  });

  test('not an object', () => {
    expect(() => validateConfig(null)).toThrow('Expected an object for config but received null');
    expect(() => validateConfig([1])).toThrow('Expected an object for config but received an array of length 1');
  });

  test('layer patterns expand', () => {
    expect(layerPatterns(presetConfig('gpt3-small')).slice(0, 4)).toEqual(['dense', 'banded', 'dense', 'banded']);
    expect(layerPatterns(presetConfig('gpt2')).every((p) => p === 'dense')).toBe(true);
  });

  test('mergeConfig: later wins, unknown keys rejected', () => {
    expect(mergeConfig(base(), { n_layer: 2 }).n_layer).toBe(2);
    expect(() => mergeConfig(base(), { nlayer: 2 })).toThrow(/did you mean "n_layer"/);
  });
});

describe('presets', () => {
  test('unknown preset has a hint', () => {
    expect(() => presetConfig('gpt-2')).toThrow(/for preset but received "gpt-2" \(string\) \(did you mean "gpt2"\?\)/);
  });
  test('gpt3-xl builds with 16 heads of 128 and says so', () => {
    const c = presetConfig('gpt3-xl');
    expect(c.n_head).toBe(16);
    expect(c.n_embd / c.n_head).toBe(128);
    expect(getPreset('gpt3-xl').note).toMatch(/16 heads of 128/);
  });
  test('gpt3-13b is count-only and names the nearest buildable shape', () => {
    expect(() => assertBuildable(presetConfig('gpt3-13b'), 'gpt3-13b')).toThrow(/cannot be built.*d_model 5120/);
  });
  test('head size above 256 is refused', () => {
    expect(() => assertBuildable({ ...base(), n_embd: 1024, n_head: 2 })).toThrow(/head size .* at most 256 but received 512/);
  });
});

describe('config.json', () => {
  test('ours round-trips; dense says gpt2, banded says gpt-engine', () => {
    const dense = toConfigJson(presetConfig('gpt2'), { tokenizer: 'gpt2' });
    expect(dense.model_type).toBe('gpt2');
    expect(parseConfigJson(JSON.parse(JSON.stringify(dense)))).toEqual({ config: presetConfig('gpt2'), tokenizer: 'gpt2' });
    const banded = toConfigJson(presetConfig('gpt3-small'));
    expect(banded.model_type).toBe('gpt-engine');
    expect(parseConfigJson(banded).config).toEqual(presetConfig('gpt3-small'));
  });

  test('ours is strict', () => {
    const c = { ...toConfigJson(presetConfig('tiny')), n_layers: 3 };
    expect(() => parseConfigJson(c)).toThrow(/Unknown key "n_layers" in config.json/);
  });

  const hf = () => ({
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    attn_pdrop: 0.1,
    bos_token_id: 50256,
    embd_pdrop: 0.1,
    eos_token_id: 50256,
    initializer_range: 0.02,
    layer_norm_epsilon: 1e-5,
    model_type: 'gpt2',
    n_ctx: 1024,
    n_embd: 768,
    n_head: 12,
    n_layer: 12,
    n_positions: 1024,
    resid_pdrop: 0.1,
    summary_activation: null,
    summary_first_dropout: 0.1,
    summary_proj_to_labels: true,
    summary_type: 'cls_index',
    summary_use_proj: true,
    task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } },
    vocab_size: 50257,
  });

  test("Hugging Face's GPT-2 config reads through the allow-list", () => {
    expect(fromHuggingFaceConfig(hf())).toEqual(presetConfig('gpt2'));
    expect(parseConfigJson(hf()).config).toEqual(presetConfig('gpt2'));
  });

  test.each([
    ['activation_function', 'relu', /Expected "gelu_new" \(tanh GELU\) for activation_function/],
    ['n_inner', 1000, /Expected null or 3072 for n_inner/],
    ['scale_attn_by_inverse_layer_idx', true, /for scale_attn_by_inverse_layer_idx/],
    ['reorder_and_upcast_attn', true, /for reorder_and_upcast_attn/],
    ['tie_word_embeddings', false, /untied heads are not supported/],
  ])('HF %s = %p is refused', (key, value, re) => {
    expect(() => fromHuggingFaceConfig({ ...hf(), [key]: value })).toThrow(re);
  });

  test('HF n_inner = 4*n_embd and null are fine', () => {
    expect(() => fromHuggingFaceConfig({ ...hf(), n_inner: 3072 })).not.toThrow();
    expect(() => fromHuggingFaceConfig({ ...hf(), n_inner: null })).not.toThrow();
  });

  test('HF unknown key is an error', () => {
    expect(() => fromHuggingFaceConfig({ ...hf(), rotary_dim: 64 })).toThrow(/Unknown key "rotary_dim"/);
  });
});

function captured(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}
