/**
 * Fuzzing config.json (ours, strict; Hugging Face's, allow-list) and
 * state.json (issue 10): seeded byte-level and JSON-aware mutations of the
 * corpus in test/fuzz-corpus/{config,state}. Every input must give a valid
 * result or a clear BadFileError naming the file, quickly.
 */
import { parseConfigFile, parseStateFile } from '../../lib/checkpoint';
import { validateConfig } from '../../lib/config';
import { BadFileError } from '../../lib/errors';
import { FuzzResult, byteMutators, fuzzCount, fuzzSeed, jsonMutators, loadCorpus, runFuzz } from '../helpers/fuzz';

// JSON-aware edits weigh more than byte edits: they get past JSON.parse to the validators.
const mutators = [...Object.values(byteMutators), ...Object.values(jsonMutators), ...Object.values(jsonMutators), ...Object.values(jsonMutators)];

function report(name: string, r: FuzzResult): void {
  if (process.env.GPT_ENGINE_FUZZ_VERBOSE)
    console.log(`${name}: ${r.count} inputs, ${r.accepted} accepted, ${r.rejected} rejected, ${r.ms.toFixed(0)} ms (mutating ${r.mutateMs.toFixed(0)} ms; slowest ${r.slowestMs.toFixed(1)} ms, ${r.slowest?.length} bytes: ${r.slowest?.subarray(0, 100).toString('latin1')})\n` +
      [...r.kinds].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => `  ${v} ${k}`).join('\n'));
}

function expectBad(fn: () => unknown, message: RegExp): void {
  const t0 = performance.now();
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BadFileError);
  expect((err as Error).message).toMatch(message);
  expect(performance.now() - t0).toBeLessThan(1000);
}

describe('config.json', () => {
  const { seeds, regressions } = loadCorpus('config');

  test('seeds parse; regressions replay', () => {
    expect(seeds.length).toBeGreaterThanOrEqual(4);
    for (const s of seeds) expect(parseConfigFile(s).config.n_layer).toBeGreaterThan(0);
    for (const r of regressions) {
      try {
        parseConfigFile(r.data);
      } catch (e) {
        if (!(e instanceof BadFileError)) throw new Error(`regression ${r.name}: ${(e as Error).message}`);
      }
    }
  });

  test('3,000 mutated config files', async () => {
    const r = await runFuzz({
      seed: fuzzSeed(0xc0f1),
      count: fuzzCount(3000),
      corpus: seeds,
      mutators,
      allowed: [BadFileError],
      parse: (input) => {
        const { config } = parseConfigFile(input, 'config.json');
        // What it accepted is a valid config.
        validateConfig(config);
        return 0;
      },
    });
    report('config.json', r);
    expect(r.accepted).toBeGreaterThan(0);
    expect(r.rejected).toBeGreaterThan(r.count / 3);
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
    for (const r of regressions) {
      try {
        parseStateFile(r.data);
      } catch (e) {
        if (!(e instanceof BadFileError)) throw new Error(`regression ${r.name}: ${(e as Error).message}`);
      }
    }
  });

  test('3,000 mutated state files', async () => {
    const r = await runFuzz({
      seed: fuzzSeed(0x57a7),
      count: fuzzCount(3000),
      corpus: seeds,
      mutators,
      allowed: [BadFileError],
      parse: (input) => {
        const s = parseStateFile(input, 'state.json');
        expect(Number.isSafeInteger(s.step) && s.step >= 0).toBe(true);
        return 0;
      },
    });
    report('state.json', r);
    expect(r.accepted).toBeGreaterThan(0);
    expect(r.rejected).toBeGreaterThan(r.count / 3);
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
