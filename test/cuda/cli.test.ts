/**
 * The real CLI on the CUDA backend (a GPU, or the SIMT emulator build;
 * jest.config.js): `gpt-engine train --device cuda` on a micro model writes
 * its run folder and checkpoint, and `gpt-engine generate --device cuda` from
 * that checkpoint gives the same greedy tokens as `--device cpu`.
 *
 * What is compared: both generate runs use `--precision fp32` (the checkpoint
 * holds fp32 weights; bf16 on one side would move the logits by ~1e-2 and
 * could change a choice), so the two backends' logits agree to ~1e-6. Two
 * runs per device, each checked for equal token ids and text:
 *   - greedy (`--temperature 0`): each token is the argmax;
 *   - seeded sampling (`--temperature 1 --seed 5`): each token is drawn from
 *     the softmax by the same random numbers, so it differs only if a draw
 *     falls within ~1e-6 of a boundary of the cumulative distribution. A
 *     model this small and briefly trained is near its unigram stage, where
 *     greedy output tends to repeat one token; the sampled run compares the
 *     whole distribution at every position.
 * Training itself runs in the CUDA default (bf16), so the CLI's bf16 path is
 * exercised too. Sized for the emulator: two layers (dense, then banded with
 * window 8, shorter than the prompt), head size 64 (a size the bf16
 * attention kernels take), 4 steps.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { distFile, runNode } from '../helpers/child-util';

let tmp: string;
let cli: string;

function gpte(args: string[]) {
  return runNode([cli, ...args], {
    env: { GPT_ENGINE_CACHE: path.join(tmp, 'cache'), GPT_ENGINE_THREADS: '2' },
    timeoutMs: 120000,
  });
}

beforeAll(() => {
  cli = distFile('bin/gpt-engine.js');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-cuda-cli-'));
  fs.writeFileSync(path.join(tmp, 'a.txt'), 'It was the best of times, it was the worst of times,\n'.repeat(40));
  fs.writeFileSync(
    path.join(tmp, 'micro.json'),
    JSON.stringify({
      n_layer: 2,
      n_head: 1,
      n_embd: 64,
      n_positions: 64,
      attention_pattern: 'alternating',
      attention_window: 8,
      batch: 2,
      seq: 32,
      lr: 0.01,
      eval_windows: 2,
      sample_tokens: 0,
    }),
  );
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('train --device cuda writes a checkpoint; generate from it on cuda equals cpu (fp32: greedy and seeded sampling)', async () => {
  const data = path.join(tmp, 'data');
  const prep = await gpte(['prepare', path.join(tmp, 'a.txt'), '--out', data, '--tokenizer', 'byte', '--val-fraction', '0.1']);
  expect(prep.code).toBe(0);

  const run = path.join(tmp, 'run');
  const t = await gpte(['train', '--config', path.join(tmp, 'micro.json'), '--data', data, '--out', run, '--steps', '4', '--eval-every', '4', '--device', 'cuda', '--json']);
  if (t.code !== 0) throw new Error(`train exited ${t.code}:\n${t.stderr}`);
  const doc = JSON.parse(t.stdout);
  expect(doc.step).toBe(4);
  expect(doc.finished).toBe(true);
  expect(doc.losses).toHaveLength(4);
  for (const l of doc.losses) expect(Number.isFinite(l) && l > 0).toBe(true);
  expect(t.stderr).toMatch(/^device: cuda /m);
  // One plain loss line per step on stderr (not a TTY: no bar).
  expect(t.stderr).toMatch(/^step 1\/4 {2}loss \d+\.\d+/m);
  expect(t.stderr).toMatch(/^step 4\/4 {2}loss \d+\.\d+/m);
  const ckpt = path.join(run, 'checkpoints', 'step-4');
  expect(doc.checkpoint).toBe(ckpt);
  for (const f of ['config.json', 'model.safetensors', 'optimizer.safetensors', 'state.json'])
    expect(fs.statSync(path.join(ckpt, f)).size).toBeGreaterThan(0);
  expect(fs.readFileSync(path.join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(4);
  expect(JSON.parse(fs.readFileSync(path.join(ckpt, 'state.json'), 'utf8')).step).toBe(4);

  const common = ['generate', '--checkpoint', ckpt, '--prompt', 'It was the best of times', '--max-tokens', '32', '--ignore-eos', '--precision', 'fp32', '--json'];
  for (const sampling of [['--temperature', '0'], ['--temperature', '1', '--seed', '5']]) {
    const gc = await gpte([...common, ...sampling, '--device', 'cuda']);
    if (gc.code !== 0) throw new Error(`generate --device cuda exited ${gc.code}:\n${gc.stderr}`);
    const gp = await gpte([...common, ...sampling, '--device', 'cpu']);
    if (gp.code !== 0) throw new Error(`generate --device cpu exited ${gp.code}:\n${gp.stderr}`);
    const onCuda = JSON.parse(gc.stdout);
    const onCpu = JSON.parse(gp.stdout);
    expect([onCuda.device, onCuda.precision]).toEqual(['cuda', 'fp32']);
    expect([onCpu.device, onCpu.precision]).toEqual(['cpu', 'fp32']);
    expect(onCuda.tokens).toHaveLength(32);
    expect({ sampling, tokens: onCuda.tokens, text: onCuda.text }).toEqual({ sampling, tokens: onCpu.tokens, text: onCpu.text });
  }
});
