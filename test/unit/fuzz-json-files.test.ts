/**
 * Fuzzing config.json (ours, strict; Hugging Face's, allow-list) and
 * state.json: seeded byte-level and JSON-aware mutations of the
 * corpus in test/fuzz-corpus/{config,state}. Every input must give a valid
 * result or a clear BadFileError naming the file, quickly.
 */
import { parseConfigFile, parseStateFile } from '../../lib/checkpoint';
import { validateConfig } from '../../lib/config';
import { BadFileError } from '../../lib/errors';
import { byteMutators, fuzzCount, fuzzSeed, jsonMutators, loadCorpus } from '../helpers/fuzz';
import { expectBadFile, fuzzAcceptsAndRefuses, replayRegressions } from './shared/parser-tests';

// JSON-aware edits weigh more than byte edits: they get past JSON.parse to the validators.
const mutators = [...Object.values(byteMutators), ...Object.values(jsonMutators), ...Object.values(jsonMutators), ...Object.values(jsonMutators)];

/**
 * Refused with a BadFileError matching `message`, within 3 s: quick enough
 * to show the input is refused early (walking it whole takes far longer),
 * with room for a loaded 2-core machine (the refusal takes 0.3-1.8 s there).
 */
function expectBad(fn: () => unknown, message: RegExp): void {
  const t0 = performance.now();
  expectBadFile(fn, message);
  expect(performance.now() - t0).toBeLessThan(3000);
}

describe('config.json', () => {
  const { seeds, regressions } = loadCorpus('config');

  test('seeds parse; regressions replay', () => {
    expect(seeds.length).toBeGreaterThanOrEqual(4);
    for (const s of seeds) expect(parseConfigFile(s).config.n_layer).toBeGreaterThan(0);
    replayRegressions(regressions, (data) => parseConfigFile(data));
  });

  test('3,000 mutated config files', async () => {
    await fuzzAcceptsAndRefuses('config.json', 0xc0f1, seeds, mutators, (input) => {
      const { config } = parseConfigFile(input, 'config.json');
      // What it accepted is a valid config.
      validateConfig(config);
    });
  });

  test.each<[string, string | Buffer, RegExp]>([
    ['a key of a million characters', `{"${'n'.repeat(1_000_000)}": 1, "n_layer": 1}`, /has a key of 1000000 characters/],
    ['a pattern name of a million characters', `{"gpt_engine_version":"0.1.0","n_layer":1,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4,"attention_pattern":"${'d'.repeat(1_000_000)}"}`, /string of 1000000 characters/],
    ['a per-layer pattern of a million entries', `{"gpt_engine_version":"0.1.0","n_layer":1,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4,"attention_pattern":[${Array(1_000_000).fill('"dense"').join(',')}]}`, /Expected an array of 1 entries/],
    ['10,000 nested arrays', `{"n_layer":${'['.repeat(10000)}${']'.repeat(10000)}}`, /nests JSON deeper than 32 levels/],
    ['an exponent that overflows', '{"n_layer":1e999,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4}', /n_layer but received Infinity/],
    ['n_layer beyond 2^53', '{"n_layer":9007199254740993,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4}', /n_layer/],
    ['a __proto__ key', '{"__proto__":{"n_layer":1},"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4}', /__proto__/],
    ['a byte-order mark', '\uFEFF{"n_layer":1,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4}', /not valid JSON/],
    ['Latin-1 bytes', Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x3a, 0x31, 0x7d]), /not valid UTF-8/],
    ['an empty file', '', /not valid JSON/],
    ['null', 'null', /expected a JSON object but found null/],
    ['HF n_inner not 4*n_embd', '{"n_layer":1,"n_head":1,"n_embd":4,"n_positions":4,"vocab_size":4,"n_inner":8}', /n_inner/],
  ])('%s', (_name, input, message) => expectBad(() => parseConfigFile(typeof input === 'string' ? Buffer.from(input) : input, 'config.json'), message));
});

describe('state.json', () => {
  const { seeds, regressions } = loadCorpus('state');

  test('seeds parse; regressions replay', () => {
    for (const s of seeds) expect(parseStateFile(s).version).toBe(1);
    replayRegressions(regressions, (data) => parseStateFile(data));
  });

  test('3,000 mutated state files', async () => {
    await fuzzAcceptsAndRefuses('state.json', 0x57a7, seeds, mutators, (input) => {
      const s = parseStateFile(input, 'state.json');
      expect(Number.isSafeInteger(s.step) && s.step >= 0).toBe(true);
    });
  });

  test.each<[string, string, RegExp]>([
    ['a key of a million characters', `{"${'s'.repeat(1_000_000)}": 1}`, /has a key of 1000000 characters/],
    ['an rng key of a million characters', `{"version":1,"step":1,"rng":{"a":{"${'s'.repeat(1_000_000)}":"1"}}}`, /has a key of 1000000 characters/],
    ['an rng state of a million digits', `{"version":1,"step":1,"rng":{"a":{"state":"${'9'.repeat(1_000_000)}","inc":"1"}}}`, /string of 1000000 characters/],
    ['sampler nested 40 deep', `{"version":1,"step":1,"sampler":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}`, /nests JSON deeper than 33 levels/],
    ['a step of 1e400', '{"version":1,"step":1e400}', /step but received Infinity/],
    ['a fractional step', '{"version":1,"step":2.5}', /Expected a non-negative integer for step but received 2.5/],
    ['an array', '[1,2]', /Expected an object for state.json but received an array/],
  ])('%s', (_name, input, message) => expectBad(() => parseStateFile(Buffer.from(input), 'state.json'), message));
});
