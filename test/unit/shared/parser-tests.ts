/**
 * What the tests of the file parsers share: the check that an input is
 * refused with a BadFileError and the words expected, replaying the fuzz
 * corpus regressions, a fuzz pass (runFuzz, test/helpers/fuzz.ts) with its
 * summary printed under GPT_ENGINE_FUZZ_VERBOSE, and a scratch folder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BadFileError } from '../../../lib/errors';
import { FuzzOptions, FuzzResult, Mutator, fuzzCount, fuzzSeed, runFuzz } from '../../helpers/fuzz';

/** `fn` must throw a BadFileError whose message matches every one of `parts`. */
export function expectBadFile(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BadFileError);
  for (const p of parts) expect((err as Error).message).toMatch(p);
}

/** Every regression input must parse or be refused with a BadFileError; any other error fails, naming the input. */
export function replayRegressions(regressions: { name: string; data: Buffer }[], parse: (data: Buffer) => unknown): void {
  for (const r of regressions) {
    try {
      parse(r.data);
    } catch (e) {
      if (!(e instanceof BadFileError)) throw new Error(`regression ${r.name}: ${(e as Error).message}`);
    }
  }
}

/** runFuzz, then (with GPT_ENGINE_FUZZ_VERBOSE set) the counts, the slowest input and the 25 commonest refusals. */
export async function fuzzAndReport(name: string, options: FuzzOptions): Promise<FuzzResult> {
  const r = await runFuzz(options);
  if (process.env.GPT_ENGINE_FUZZ_VERBOSE)
    console.log(`${name}: ${r.count} inputs, ${r.accepted} accepted, ${r.rejected} rejected, ${r.ms.toFixed(0)} ms (mutating ${r.mutateMs.toFixed(0)} ms; slowest ${r.slowestMs.toFixed(1)} ms, ${r.slowest?.length} bytes: ${r.slowest?.subarray(0, 100).toString('latin1')})\n` +
      [...r.kinds].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, v]) => `  ${v} ${k}`).join('\n'));
  return r;
}

/**
 * 3,000 mutated inputs (GPT_ENGINE_FUZZ_COUNT overrides) for a parser that
 * refuses with BadFileError; `check` parses one and checks what it accepted.
 * The mutations must reach both sides: some inputs get through, over a third
 * are refused.
 */
export async function fuzzAcceptsAndRefuses(
  name: string,
  seed: number,
  corpus: Buffer[],
  mutators: Mutator[],
  check: (input: Buffer) => void,
): Promise<void> {
  const r = await fuzzAndReport(name, {
    seed: fuzzSeed(seed),
    count: fuzzCount(3000),
    corpus,
    mutators,
    allowed: [BadFileError],
    parse: (input) => {
      check(input);
      return 0;
    },
  });
  expect(r.accepted).toBeGreaterThan(0);
  expect(r.rejected).toBeGreaterThan(r.count / 3);
}

/** A folder made before the file's tests and removed after them; call the result for its path. */
export function scratchDirForAll(prefix: string): () => string {
  let dir = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  return () => dir;
}
