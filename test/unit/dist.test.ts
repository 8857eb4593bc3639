/**
 * The pure parts of data-parallel training (docs/DISTRIBUTED.md): the
 * batch-tokens rule, mpirun's command line and failure report, per-rank memory.
 */
import { failedRank, mpirunArgs, withoutNproc } from '../../lib/distributed/launch';
import { presetConfig } from '../../lib/config';
import { perRankTrainingMemory, trainingMemory } from '../../lib/params';
import { distBatchTokens } from '../../lib/train/dist';
import type { TrainSettings } from '../../lib/train/settings';

const settings = (over: Partial<TrainSettings>) => ({ batch: 4, seq: 64, batch_tokens: 256, ...over }) as TrainSettings;

test('batch tokens: one micro-batch per rank unless given; a given value must be a multiple of ranks x batch x seq', () => {
  const s = settings({});
  expect(distBatchTokens(s, 2, false)).toBe(1);
  expect(s.batch_tokens).toBe(512);
  expect(distBatchTokens(settings({ batch_tokens: 2048 }), 2, true)).toBe(4);
  expect(distBatchTokens(settings({ batch_tokens: 1536 }), 3, true)).toBe(2);
  expect(() => distBatchTokens(settings({ batch_tokens: 768 }), 2, true)).toThrow(/= 512 for batch_tokens but received 768: with 2 ranks use --batch-tokens 512, 1024, 2048/);
});

test('mpirun command line: root flag only as root, no binding, the rank count, the command last', () => {
  const a = mpirunArgs(3, ['node', 'cli.js', 'train'], { root: false });
  expect(a).not.toContain('--allow-run-as-root');
  expect(a.slice(a.indexOf('--bind-to'), a.indexOf('--bind-to') + 2)).toEqual(['--bind-to', 'none']);
  expect(a.slice(a.indexOf('-np'), a.indexOf('-np') + 2)).toEqual(['-np', '3']);
  expect(a.slice(-3)).toEqual(['node', 'cli.js', 'train']);
  expect(mpirunArgs(2, ['x'], { root: true })[0]).toBe('--allow-run-as-root');
  expect(withoutNproc(['cli.js', 'train', '--nproc', '2', '--steps', '5', '--nproc=4'])).toEqual(['cli.js', 'train', '--steps', '5']);
});

test('the failed rank and its cause, from what the ranks and mpirun wrote', () => {
  expect(failedRank('x\ngpt-engine: rank 1: error: Cannot read --config a.json\nmore')).toEqual({ rank: 1, cause: 'Cannot read --config a.json' });
  expect(failedRank('mpirun noticed that process rank 3 with PID 0 on node vm exited on signal 9 (Killed).')).toEqual({ rank: 3, cause: 'it was killed by signal 9 (Killed)' });
  expect(failedRank('mpirun noticed that process rank 0 with PID 12 on node n1 exited with status 7')).toEqual({ rank: 0, cause: 'it exited with status 7' });
  expect(failedRank('nothing here')).toBeNull();
});

test('per-rank memory: weights and gradients whole, Adam moments split W ways', () => {
  const c = presetConfig('gpt3-xl');
  const whole = trainingMemory(c);
  const eight = perRankTrainingMemory(c, 8);
  expect(eight.optimizer).toBe(Math.ceil(whole.optimizer / 8));
  expect(eight.fp32).toBe(whole.weights + whole.gradients + eight.optimizer);
  expect(eight.bf16 - eight.fp32).toBe(whole.bf16 - whole.fp32);
  expect(perRankTrainingMemory(c, 1)).toEqual(whole);
  expect(perRankTrainingMemory(c, 4, false).fp32).toBe(whole.fp32);
});
