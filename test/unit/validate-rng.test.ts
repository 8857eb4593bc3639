import { Rng } from '../../lib/rng';
import { describe as show, didYouMean, expectInteger, expectNumber, expectOneOf, checkKnownKeys, expectFloat32Array } from '../../lib/validate';

describe('validate', () => {
  test('describe shows value and type', () => {
    expect(show(1.5)).toBe('1.5 (number)');
    expect(show('x')).toBe('"x" (string)');
    expect(show(undefined)).toBe('undefined');
    expect(show(new Float32Array(3))).toBe('a Float32Array of length 3');
  });
  test('integer bounds', () => {
    expect(() => expectInteger('batch', 0, { min: 1 })).toThrow('Expected a positive integer for batch but received 0 (number)');
    expect(() => expectInteger('k', 11, { min: 0, max: 10 })).toThrow('Expected a non-negative integer <= 10 for k but received 11 (number)');
    expect(expectInteger('k', 3, { min: 0, max: 10 })).toBe(3);
  });
  test('numbers must be finite', () => {
    expect(() => expectNumber('scale', NaN)).toThrow('Expected a finite number for scale but received NaN (number)');
    expect(() => expectNumber('lr', 0, { gt: 0 })).toThrow('Expected a finite number > 0 for lr but received 0 (number)');
  });
  test('one-of with hint, known keys', () => {
    expect(() => expectOneOf('device', 'cdua', ['auto', 'cpu', 'cuda'])).toThrow(/\(did you mean "cuda"\?\)/);
    expect(didYouMean('zzzzzz', ['cpu'])).toBe('');
    expect(() => checkKnownKeys('options', { maxTokns: 1 }, ['maxTokens', 'seed'])).toThrow(
      'Unknown key "maxTokns" in options (did you mean "maxTokens"?); expected one of: maxTokens, seed',
    );
  });
  test('typed arrays', () => {
    expect(() => expectFloat32Array('q', [1, 2], 2)).toThrow('Expected a Float32Array for q but received an array of length 2');
    expect(() => expectFloat32Array('q', new Float32Array(3), 2)).toThrow(
      'Expected a Float32Array of length 2 for q but received a Float32Array of length 3',
    );
  });
});

describe('Rng', () => {
  test('same seed and stream give the same sequence; streams differ', () => {
    const a = new Rng(42, 0);
    const b = new Rng(42, 0);
    const c = new Rng(42, 1);
    const sa = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(sa);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(sa);
  });
  test('state round-trips exactly', () => {
    const a = new Rng(7, 3);
    a.nextU32();
    const s = JSON.parse(JSON.stringify(a.getState()));
    const b = Rng.fromState(s);
    expect(Array.from({ length: 5 }, () => b.nextFloat())).toEqual(Array.from({ length: 5 }, () => a.nextFloat()));
  });
  test('floats in [0,1), ints unbiased-ish', () => {
    const r = new Rng(1);
    const counts = new Array(5).fill(0);
    for (let i = 0; i < 5000; i++) {
      const f = r.nextFloat();
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThan(1);
      counts[r.nextInt(5)]++;
    }
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });
});
