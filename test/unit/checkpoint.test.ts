import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CheckpointData,
  checkpointDirName,
  expectedTensorShapes,
  isCompleteCheckpoint,
  listCheckpoints,
  parseStateFile,
  pruneCheckpoints,
  readCheckpoint,
  readLatest,
  updateLatest,
  validateState,
  writeCheckpoint,
} from '../../lib/checkpoint';
import { GPTConfig, toConfigJson } from '../../lib/config';
import { ArgumentRangeError, ArgumentTypeError, BadFileError } from '../../lib/errors';
import { encodeSafetensors, setWriteFaultHook } from '../../lib/safetensors';
import { RawTensor, bf16Bytes, buildSafetensors, f16Bytes, f32Bytes } from '../helpers/fuzz';

const config: GPTConfig = {
  n_layer: 2,
  n_head: 2,
  n_embd: 4,
  n_positions: 8,
  vocab_size: 10,
  layer_norm_epsilon: 1e-5,
  attention_pattern: 'alternating',
  attention_window: 3,
};

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gpte-ckpt-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => setWriteFaultHook(null));

/** Values exactly representable in fp16 and bf16 (multiples of 1/8 up to 16). */
function tensorsFor(c: GPTConfig, salt = 0): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  let k = salt;
  for (const [name, shape] of expectedTensorShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    m.set(name, Float32Array.from({ length: n }, () => ((k++ % 97) - 48) / 8));
  }
  return m;
}

function data(c = config, salt = 0): CheckpointData {
  return { config: c, tokenizer: 'byte', tensors: tensorsFor(c, salt), shapes: expectedTensorShapes(c) };
}

let n = 0;
const fresh = (name = 'd') => path.join(tmp, `${name}-${n++}`);

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, ...parts: (string | RegExp)[]): Promise<Error> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  for (const part of parts) expect((err as Error).message).toMatch(part);
  return err as Error;
}

describe('expectedTensorShapes', () => {
  test('names, order and Conv1D [in, out] shapes', () => {
    const m = expectedTensorShapes(config);
    expect(m.size).toBe(2 + 12 * 2 + 2);
    expect([...m.keys()].slice(0, 4)).toEqual(['wte.weight', 'wpe.weight', 'h.0.ln_1.weight', 'h.0.ln_1.bias']);
    expect(m.get('wte.weight')).toEqual([10, 4]);
    expect(m.get('wpe.weight')).toEqual([8, 4]);
    expect(m.get('h.1.attn.c_attn.weight')).toEqual([4, 12]);
    expect(m.get('h.1.attn.c_attn.bias')).toEqual([12]);
    expect(m.get('h.0.attn.c_proj.weight')).toEqual([4, 4]);
    expect(m.get('h.0.mlp.c_fc.weight')).toEqual([4, 16]);
    expect(m.get('h.0.mlp.c_proj.weight')).toEqual([16, 4]);
    expect(m.get('ln_f.bias')).toEqual([4]);
  });
});

describe('write and read', () => {
  test('weights, optimizer and state round-trip exactly', async () => {
    const dir = fresh();
    const d = data();
    d.optimizer = { exp_avg: tensorsFor(config, 5), exp_avg_sq: tensorsFor(config, 9) };
    d.state = { step: 20, total_steps: 40, rng: { sampler: { state: '18446744073709551615', inc: '3' } }, sampler: { pos: [1, 2] }, schedule: { lr: 6e-4, warmup: 2 } };
    await writeCheckpoint(dir, d);
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'optimizer.safetensors', 'state.json']);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual(toConfigJson(config, { tokenizer: 'byte' }));
    const r = await readCheckpoint(dir, { optimizer: true });
    expect(r.source).toBe('gpt-engine');
    expect(r.dir).toBe(path.resolve(dir));
    expect(r.config).toEqual(config);
    expect(r.tokenizer).toBe('byte');
    expect([...r.tensors.keys()]).toEqual([...expectedTensorShapes(config).keys()]);
    for (const [k, v] of d.tensors) expect(r.tensors.get(k)).toEqual(v);
    expect(r.shapes).toEqual(expectedTensorShapes(config));
    for (const [k, v] of d.optimizer.exp_avg) expect(r.optimizer!.exp_avg.get(k)).toEqual(v);
    for (const [k, v] of d.optimizer.exp_avg_sq) expect(r.optimizer!.exp_avg_sq.get(k)).toEqual(v);
    expect(r.state).toEqual({ version: 1, ...d.state });
    // Without optimizer: true the optimizer file is not read.
    expect((await readCheckpoint(dir)).optimizer).toBeUndefined();
    // Nothing temporary is left beside it.
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  test('a weights-only checkpoint has no optimizer or state', async () => {
    const dir = fresh();
    await writeCheckpoint(dir, data());
    const r = await readCheckpoint(dir, { optimizer: true });
    expect(r.optimizer).toBeUndefined();
    expect(r.state).toBeUndefined();
  });

  test('writing over an existing checkpoint replaces it', async () => {
    const dir = fresh();
    await writeCheckpoint(dir, data(config, 1));
    await writeCheckpoint(dir, { ...data(config, 2), state: { step: 3 } });
    const r = await readCheckpoint(dir);
    expect(r.tensors.get('wte.weight')).toEqual(tensorsFor(config, 2).get('wte.weight'));
    expect(r.state!.step).toBe(3);
    expect(fs.readdirSync(path.dirname(dir)).filter((f) => f.startsWith(`.${path.basename(dir)}`))).toEqual([]);
  });

  test('a write that fails mid-way leaves the previous checkpoint and says what happened', async () => {
    const dir = fresh();
    await writeCheckpoint(dir, { ...data(config, 1), state: { step: 10 } });
    const before = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
    setWriteFaultHook((file, offset) => {
      if (file.endsWith('optimizer.safetensors') && offset > 0)
        throw Object.assign(new Error('ENOSPC: no space left on device, write (injected)'), { code: 'ENOSPC' });
    });
    const d = { ...data(config, 2), optimizer: { exp_avg: tensorsFor(config), exp_avg_sq: tensorsFor(config) }, state: { step: 20 } };
    const err = await rejectsWith(
      writeCheckpoint(dir, d),
      Error,
      `Could not write the checkpoint ${path.resolve(dir)}: writing optimizer.safetensors failed: ENOSPC`,
      `The previous checkpoint at ${path.resolve(dir)} is unchanged.`,
    );
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    const after = Object.fromEntries(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]));
    expect(after).toEqual(before);
    expect(fs.readdirSync(path.dirname(dir)).filter((f) => f.startsWith(`.${path.basename(dir)}`))).toEqual([]);
    expect((await readCheckpoint(dir)).state!.step).toBe(10);
  });

  test('a failed first write leaves nothing under the name', async () => {
    const dir = fresh();
    setWriteFaultHook((file) => {
      if (file.endsWith('model.safetensors')) throw new Error('EIO: i/o error (injected)');
    });
    await rejectsWith(writeCheckpoint(dir, data()), Error, /writing model.safetensors failed: EIO/, `Nothing was written under ${path.resolve(dir)}.`);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test('writer validation: nothing is written', async () => {
    const dir = fresh();
    const d = data();
    d.tensors.delete('h.1.ln_2.bias');
    await rejectsWith(writeCheckpoint(dir, d), ArgumentRangeError, 'Expected a tensor "h.1.ln_2.bias" of shape [4] in tensors but it is missing');
    const e = data();
    e.tensors.set('h.0.attn.bais', new Float32Array(1));
    await rejectsWith(writeCheckpoint(dir, e), ArgumentRangeError, /Unexpected tensor "h.0.attn.bais" in tensors \(did you mean "h.0.attn.c_attn.bias"\?\)|Unexpected tensor "h.0.attn.bais"/);
    const f = data();
    f.tensors.set('wpe.weight', new Float32Array(3));
    await rejectsWith(writeCheckpoint(dir, f), ArgumentRangeError, 'Expected 32 elements (shape [8, 4]) for tensors "wpe.weight" but received a Float32Array of length 3');
    const g = data();
    g.shapes = new Map(g.shapes);
    g.shapes.set('wte.weight', [4, 10]);
    await rejectsWith(writeCheckpoint(dir, g), ArgumentRangeError, 'Expected shape [10, 4] for "wte.weight" in shapes but received [4, 10]');
    await rejectsWith(writeCheckpoint(dir, { ...data(), state: { step: -1 } }), ArgumentRangeError, 'Expected a non-negative integer for step but received -1 (number)');
    await rejectsWith(writeCheckpoint(dir, { ...data(), state: { step: 1, sampler: { f: () => 1 } } }), ArgumentTypeError, /Expected a JSON value .* for sampler.f but received a function/);
    await rejectsWith(writeCheckpoint(dir, { ...data(), tokenizer: 'bpe' as 'gpt2' }), ArgumentRangeError, 'Expected one of "gpt2", "byte" for tokenizer but received "bpe" (string)');
    await rejectsWith(writeCheckpoint(dir, { ...data(), config: { ...config, n_head: 3 } }), ArgumentRangeError, /divisible by n_head/);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test('refuses to replace a folder that is not a checkpoint', async () => {
    const dir = fresh();
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    await rejectsWith(writeCheckpoint(dir, data()), ArgumentRangeError, `Refusing to replace ${path.resolve(dir)} with a checkpoint`);
    expect(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine');
  });
});

describe('run folders', () => {
  test('names, latest, listing, fallback and pruning', async () => {
    const run = fresh('run');
    expect(checkpointDirName(40)).toBe('step-40');
    expect(() => checkpointDirName(-1)).toThrow(ArgumentRangeError);
    for (const s of [10, 20, 30]) {
      await writeCheckpoint(path.join(run, 'checkpoints', checkpointDirName(s)), { ...data(config, s), state: { step: s } });
      await updateLatest(run, checkpointDirName(s));
    }
    expect(fs.readFileSync(path.join(run, 'latest'), 'utf8')).toBe('step-30\n');
    expect(await readLatest(run)).toBe('step-30');
    // An incomplete folder (a copy cut short) is not listed.
    fs.mkdirSync(path.join(run, 'checkpoints', 'step-40'));
    fs.writeFileSync(path.join(run, 'checkpoints', 'step-40', 'config.json'), JSON.stringify(toConfigJson(config)));
    expect(await isCompleteCheckpoint(path.join(run, 'checkpoints', 'step-40'))).toBe(false);
    expect((await listCheckpoints(run)).map((e) => e.step)).toEqual([10, 20, 30]);
    expect((await readCheckpoint(run)).state!.step).toBe(30);
    // latest names an older one: it wins.
    await updateLatest(run, 'step-20');
    expect((await readCheckpoint(run)).dir).toBe(path.join(path.resolve(run), 'checkpoints', 'step-20'));
    // latest broken or missing: the highest complete step.
    fs.writeFileSync(path.join(run, 'latest'), '../../etc\n');
    expect((await readCheckpoint(run)).state!.step).toBe(30);
    fs.writeFileSync(path.join(run, 'latest'), 'step-40\n');
    expect((await readCheckpoint(run)).state!.step).toBe(30);
    fs.rmSync(path.join(run, 'latest'));
    expect((await readCheckpoint(run)).state!.step).toBe(30);
    // Pruning keeps the newest K and whatever latest names.
    await updateLatest(run, 'step-10');
    const stale = path.join(run, 'checkpoints', '.step-50.tmp-999999999-abcd1234');
    fs.mkdirSync(stale);
    expect((await pruneCheckpoints(run, 1)).sort()).toEqual(['.step-50.tmp-999999999-abcd1234', 'step-20']);
    expect(fs.readdirSync(path.join(run, 'checkpoints')).sort()).toEqual(['step-10', 'step-30', 'step-40']);
    await expect(updateLatest(run, '../x')).rejects.toThrow('Expected a checkpoint name like "step-100" for latest but received "../x" (string)');
    await expect(pruneCheckpoints(run, 0)).rejects.toThrow('Expected a positive integer for keep but received 0 (number)');
  });

  test('a run folder without a complete checkpoint', async () => {
    const run = fresh('run');
    fs.mkdirSync(path.join(run, 'checkpoints'), { recursive: true });
    await rejectsWith(readCheckpoint(run), BadFileError, `The run folder ${path.resolve(run)} has no complete checkpoint`);
  });

  test('folders that are neither', async () => {
    const d = fresh();
    fs.mkdirSync(d);
    await rejectsWith(readCheckpoint(d), BadFileError, 'is neither a checkpoint folder (no config.json) nor a run folder');
    await rejectsWith(readCheckpoint(path.join(tmp, 'nope')), BadFileError, 'No such folder');
    fs.mkdirSync(path.join(tmp, '.gone.old-1-ab'));
    await rejectsWith(readCheckpoint(path.join(tmp, 'gone')), BadFileError, `a previous checkpoint was left at ${path.join(tmp, '.gone.old-1-ab')} by an interrupted write`);
    fs.rmSync(path.join(tmp, '.gone.old-1-ab'), { recursive: true });
    fs.writeFileSync(path.join(d, 'f'), 'x');
    await rejectsWith(readCheckpoint(path.join(d, 'f')), BadFileError, 'is not a folder');
  });
});

// ---------------------------------------------------------------------------
// Hugging Face GPT-2 folders

const hfConfig = { n_layer: 2, n_head: 2, n_embd: 4, n_positions: 8, n_ctx: 8, vocab_size: 10, activation_function: 'gelu_new', model_type: 'gpt2', attn_pdrop: 0.1, architectures: ['GPT2LMHeadModel'] };
const dense: GPTConfig = { ...config, attention_pattern: 'dense', attention_window: null };

function hfFolder(opts: { prefix?: string; dtype?: 'F32' | 'F16' | 'BF16'; buffers?: boolean; lmHead?: 'tied' | 'untied'; edit?: (t: RawTensor[]) => void; cfg?: object } = {}): string {
  const dir = fresh('hf');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(opts.cfg ?? hfConfig));
  const t = tensorsFor(dense);
  const enc = opts.dtype === 'F16' ? f16Bytes : opts.dtype === 'BF16' ? bf16Bytes : f32Bytes;
  const raw: RawTensor[] = [];
  for (const [name, shape] of expectedTensorShapes(dense)) {
    raw.push({ name: (opts.prefix ?? '') + name, dtype: opts.dtype ?? 'F32', shape, bytes: enc(t.get(name)!) });
    if (opts.buffers && name.endsWith('ln_1.bias')) {
      const i = name.split('.')[1];
      raw.push({ name: `${opts.prefix ?? ''}h.${i}.attn.bias`, dtype: 'F32', shape: [1, 1, 8, 8], bytes: new Uint8Array(256) });
      raw.push({ name: `${opts.prefix ?? ''}h.${i}.attn.masked_bias`, dtype: 'F32', shape: [], bytes: f32Bytes([-1e4]) });
    }
  }
  if (opts.lmHead) {
    const w = Float32Array.from(t.get('wte.weight')!);
    if (opts.lmHead === 'untied') w[3] += 1;
    raw.push({ name: 'lm_head.weight', dtype: opts.dtype ?? 'F32', shape: [10, 4], bytes: enc(w) });
  }
  opts.edit?.(raw);
  fs.writeFileSync(path.join(dir, 'model.safetensors'), buildSafetensors(raw, { metadata: { format: 'pt' } }));
  return dir;
}

describe('Hugging Face GPT-2 folders', () => {
  test.each([
    ['plain names, fp32', {}],
    ['transformer. prefix, mask buffers, tied lm_head', { prefix: 'transformer.', buffers: true, lmHead: 'tied' as const }],
    ['fp16', { dtype: 'F16' as const, lmHead: 'tied' as const }],
    ['bf16', { dtype: 'BF16' as const, prefix: 'transformer.' }],
  ])('%s', async (_label, opts) => {
    const r = await readCheckpoint(hfFolder(opts));
    expect(r.source).toBe('huggingface');
    expect(r.config).toEqual(dense);
    expect(r.tokenizer).toBeUndefined();
    for (const [k, v] of tensorsFor(dense)) expect(r.tensors.get(k)).toEqual(v);
  });

  test('an untied lm_head is refused', async () => {
    await rejectsWith(readCheckpoint(hfFolder({ lmHead: 'untied' })), BadFileError, /"lm_head.weight" differs from "wte.weight": untied LM heads are not supported/);
    const wrongShape = hfFolder({ edit: (t) => t.push({ name: 'lm_head.weight', dtype: 'F32', shape: [4, 10], bytes: new Uint8Array(160) }) });
    await rejectsWith(readCheckpoint(wrongShape), BadFileError, /"lm_head.weight" has shape \[4, 10\], not wte's \[10, 4\]: untied LM heads are not supported/);
  });

  test('missing, unexpected, duplicated, misshapen tensors and bad dtypes name the tensor', async () => {
    const f = (d: string) => path.join(path.resolve(d), 'model.safetensors');
    let d = hfFolder({ edit: (t) => t.splice(t.findIndex((x) => x.name === 'h.1.mlp.c_fc.bias'), 1) });
    await rejectsWith(readCheckpoint(d), BadFileError, `${f(d)}: missing tensor "h.1.mlp.c_fc.bias" (shape [16], from the config: n_layer 2, n_embd 4, vocab_size 10, n_positions 8)`);
    d = hfFolder({ edit: (t) => t.push({ name: 'h.2.ln_1.weight', dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }) });
    await rejectsWith(readCheckpoint(d), BadFileError, /unexpected tensor "h.2.ln_1.weight".*the config \(n_layer 2/);
    d = hfFolder({ edit: (t) => t.push({ name: 'transformer.wte.weight', dtype: 'F32', shape: [10, 4], bytes: new Uint8Array(160) }) });
    await rejectsWith(readCheckpoint(d), BadFileError, 'tensor "wte.weight" appears twice (as "wte.weight" and "transformer.wte.weight")');
    d = hfFolder({ edit: (t) => (t[0].shape = [4, 10]) });
    await rejectsWith(readCheckpoint(d), BadFileError, `${f(d)}: tensor "wte.weight" has shape [4, 10] but the config (n_layer 2, n_embd 4, vocab_size 10, n_positions 8) implies [10, 4]`);
    d = hfFolder({ edit: (t) => ((t[1].dtype = 'I32'), void 0) });
    await rejectsWith(readCheckpoint(d), BadFileError, 'tensor "wpe.weight" has dtype I32; gpt-engine reads F32, F16, BF16');
  });

  test('config problems are BadFileErrors naming config.json', async () => {
    let d = hfFolder({ cfg: { ...hfConfig, activation_function: 'relu' } });
    await rejectsWith(readCheckpoint(d), BadFileError, /config.json: Expected "gelu_new" \(tanh GELU\) for activation_function/);
    d = hfFolder({ cfg: { ...hfConfig, n_embd: 5 } });
    await rejectsWith(readCheckpoint(d), BadFileError, /config.json: Expected n_embd to be divisible by n_head/);
    d = hfFolder();
    fs.writeFileSync(path.join(d, 'config.json'), '{"n_layer": 2,');
    await rejectsWith(readCheckpoint(d), BadFileError, /config.json is not valid JSON/);
    fs.writeFileSync(path.join(d, 'config.json'), '[1]');
    await rejectsWith(readCheckpoint(d), BadFileError, /config.json: expected a JSON object but found an array of length 1/);
  });

  test('a folder with pytorch_model.bin only says so', async () => {
    const d = hfFolder();
    fs.rmSync(path.join(d, 'model.safetensors'));
    fs.writeFileSync(path.join(d, 'pytorch_model.bin'), 'x');
    await rejectsWith(readCheckpoint(d), BadFileError, /has no model.safetensors: the folder has pytorch_model.bin, but gpt-engine reads only model.safetensors/);
  });
});

describe('optimizer and state files', () => {
  test('a bad optimizer file names the tensor', async () => {
    const dir = fresh();
    await writeCheckpoint(dir, { ...data(), optimizer: { exp_avg: tensorsFor(config), exp_avg_sq: tensorsFor(config) } });
    const t = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [k, s] of expectedTensorShapes(config)) t.set(`exp_avg.${k}`, { shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) });
    fs.writeFileSync(path.join(dir, 'optimizer.safetensors'), encodeSafetensors(t));
    await rejectsWith(readCheckpoint(dir, { optimizer: true }), BadFileError, 'optimizer.safetensors: missing tensor "exp_avg_sq.wte.weight" (shape [10, 4])');
    expect((await readCheckpoint(dir)).tensors.size).toBe(28);
  });

  test('state.json validation', () => {
    const p = (s: unknown) => () => parseStateFile(Buffer.from(typeof s === 'string' ? s : JSON.stringify(s)), 's.json');
    expect(p({ version: 1, step: 0 })()).toEqual({ version: 1, step: 0 });
    expect(() => p({ version: 2, step: 0 })()).toThrow('s.json: Expected 1 for version but received 2 (number) (this gpt-engine reads state.json version 1)');
    expect(() => p({ version: 1 })()).toThrow('s.json: Expected a non-negative integer for step but received undefined');
    expect(() => p({ version: 1, step: 5, total_steps: 4 })()).toThrow('s.json: Expected an integer >= step (5) for total_steps but received 4 (number)');
    expect(() => p({ version: 1, step: 1, stpe: 1 })()).toThrow(/Unknown key "stpe" in s.json/);
    expect(() => p({ version: 1, step: 1, rng: { s: { state: '-1', inc: '1' } } })()).toThrow('Expected a decimal string of a 64-bit unsigned integer for rng.s.state but received "-1" (string)');
    expect(() => p({ version: 1, step: 1, rng: { s: { state: '18446744073709551616', inc: '1' } } })()).toThrow(/rng.s.state/);
    expect(() => p({ version: 1, step: 1, sampler: [1] })()).toThrow('Expected an object for sampler but received an array of length 1');
    expect(() => p('{"version":1,"step":1,"sampler":' + '['.repeat(40) + ']'.repeat(40) + '}')()).toThrow(/nests JSON deeper than 33 levels/);
    expect(() => p('\uFEFF{}')()).toThrow(BadFileError);
    expect(validateState({ version: 1, step: 1, trainer: { a: undefined, b: null } })).toEqual({ version: 1, step: 1, trainer: { b: null } });
    expect(() => validateState({ version: 1, step: 1, trainer: { a: [undefined] } })).toThrow('Expected a JSON value (null, boolean, finite number, string, array or plain object) for trainer.a[0] but received undefined');
    expect(() => validateState({ version: 1, step: 1, sampler: { x: NaN } })).toThrow('Expected a finite number for sampler.x but received NaN (number)');
  });
});
