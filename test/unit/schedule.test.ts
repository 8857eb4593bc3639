import { defaultWarmup, lrAt, makeSchedule } from '../../lib/schedule';

describe('schedule', () => {
  test('linear warmup then cosine to 10% of the peak', () => {
    const s = makeSchedule({ lr: 1e-3, warmup: 10, total: 110 });
    expect(lrAt(s, 1)).toBeCloseTo(1e-4, 12);
    expect(lrAt(s, 5)).toBeCloseTo(5e-4, 12);
    expect(lrAt(s, 10)).toBeCloseTo(1e-3, 12);
    expect(lrAt(s, 60)).toBeCloseTo(0.55e-3, 12); // half way down the cosine
    expect(lrAt(s, 110)).toBeCloseTo(1e-4, 12);
    expect(lrAt(s, 500)).toBeCloseTo(1e-4, 12);
    for (let i = 11; i < 110; i++) expect(lrAt(s, i + 1)).toBeLessThanOrEqual(lrAt(s, i));
  });

  test('no warmup starts at the peak; minRatio changes the floor', () => {
    const s = makeSchedule({ lr: 2, warmup: 0, total: 4, minRatio: 0 });
    expect(lrAt(s, 0)).toBe(2);
    expect(lrAt(s, 4)).toBe(0);
  });

  test('bad options', () => {
    expect(() => makeSchedule({ lr: 0, warmup: 0, total: 1 })).toThrow('Expected a finite number > 0 for lr but received 0 (number)');
    expect(() => makeSchedule({ lr: 1, warmup: 5, total: 4 })).toThrow('Expected warmup <= steps (4) for warmup but received 5 (number)');
    expect(() => makeSchedule({ lr: 1, warmup: 1.5, total: 4 })).toThrow(/for warmup but received 1.5/);
  });

  test('default warmup', () => {
    expect(defaultWarmup(10)).toBe(1);
    expect(defaultWarmup(1000)).toBe(50);
    expect(defaultWarmup(1e6)).toBe(2000);
  });
});
