/**
 * A float64 reference of the whole GPT (docs/ARCHITECTURE.md "The model"): forward, mean
 * cross-entropy over non-ignored targets, and backward, written plainly for
 * tiny configs. Parameters and gradients are keyed by Hugging Face GPT-2 names
 * with Conv1D weights [in, out], like GPT.parameters().
 */
import { GPTConfig, layerPatterns } from '../../lib/config';
import { attendRow, attendRowBackward } from './attention-ref';

export type Params64 = Map<string, Float64Array>;

export interface RefResult {
  logits: Float64Array; // [M, V]
  loss: number; // mean over non-ignored targets
  count: number;
  grads?: Params64;
}

const GELU_S = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_S * (x + GELU_A * x * x * x)));
}
function geluGrad(x: number): number {
  const u = GELU_S * (x + GELU_A * x * x * x);
  const t = Math.tanh(u);
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_S * (1 + 3 * GELU_A * x * x);
}

/** out[M, N] = a[M, K] @ w[K, N] + b */
function linear(a: Float64Array, w: Float64Array, b: Float64Array | null, M: number, K: number, N: number): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const av = a[i * K + k];
      if (av === 0) continue;
      for (let j = 0; j < N; j++) out[i * N + j] += av * w[k * N + j];
    }
    if (b) for (let j = 0; j < N; j++) out[i * N + j] += b[j];
  }
  return out;
}

/** Backward of linear: returns dA; accumulates dW, dB. */
function linearBack(
  dout: Float64Array,
  a: Float64Array,
  w: Float64Array,
  dw: Float64Array,
  db: Float64Array | null,
  M: number,
  K: number,
  N: number,
): Float64Array {
  const da = new Float64Array(M * K);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      const av = a[i * K + k];
      for (let j = 0; j < N; j++) {
        const d = dout[i * N + j];
        s += d * w[k * N + j];
        dw[k * N + j] += av * d;
      }
      da[i * K + k] = s;
    }
    if (db) for (let j = 0; j < N; j++) db[j] += dout[i * N + j];
  }
  return da;
}

interface LnCache {
  xhat: Float64Array;
  rstd: Float64Array;
}

function layernorm(x: Float64Array, g: Float64Array, b: Float64Array, M: number, C: number, eps: number) {
  const out = new Float64Array(M * C);
  const xhat = new Float64Array(M * C);
  const rstd = new Float64Array(M);
  for (let i = 0; i < M; i++) {
    let mu = 0;
    for (let c = 0; c < C; c++) mu += x[i * C + c];
    mu /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[i * C + c] - mu) ** 2;
    v /= C;
    const rs = 1 / Math.sqrt(v + eps);
    rstd[i] = rs;
    for (let c = 0; c < C; c++) {
      const xh = (x[i * C + c] - mu) * rs;
      xhat[i * C + c] = xh;
      out[i * C + c] = xh * g[c] + b[c];
    }
  }
  return { out, cache: { xhat, rstd } as LnCache };
}

function layernormBack(dout: Float64Array, cache: LnCache, g: Float64Array, dg: Float64Array, db: Float64Array, M: number, C: number) {
  const dx = new Float64Array(M * C);
  for (let i = 0; i < M; i++) {
    let s1 = 0;
    let s2 = 0;
    for (let c = 0; c < C; c++) {
      const d = dout[i * C + c];
      const xh = cache.xhat[i * C + c];
      dg[c] += d * xh;
      db[c] += d;
      s1 += d * g[c];
      s2 += d * g[c] * xh;
    }
    s1 /= C;
    s2 /= C;
    for (let c = 0; c < C; c++) {
      const xh = cache.xhat[i * C + c];
      dx[i * C + c] = cache.rstd[i] * (dout[i * C + c] * g[c] - s1 - xh * s2);
    }
  }
  return dx;
}

function allowed(i: number, j: number, banded: boolean, w: number): boolean {
  return j <= i && (!banded || j > i - w);
}

/** Runs the reference; with `backward` also the gradients of the mean loss. */
export function refModel(
  cfg: GPTConfig,
  P: Params64,
  tokens: ArrayLike<number>,
  targets: ArrayLike<number> | null,
  B: number,
  T: number,
  backward = false,
): RefResult {
  const C = cfg.n_embd;
  const H = cfg.n_head;
  const D = C / H;
  const V = cfg.vocab_size;
  const L = cfg.n_layer;
  const M = B * T;
  const eps = cfg.layer_norm_epsilon;
  const pats = layerPatterns(cfg);
  const w = cfg.attention_window ?? 0;
  const scale = 1 / Math.sqrt(D);
  // The keys query i of head h sees in the fused qkv rows [B*T, 3C]: their
  // positions j and where each key and value starts.
  const rowKeys = (b: number, h: number, i: number, banded: boolean) => {
    const j: number[] = [];
    for (let t = 0; t <= i; t++) if (allowed(i, t, banded, w)) j.push(t);
    return { j, k: j.map((t) => (b * T + t) * 3 * C + C + h * D), v: j.map((t) => (b * T + t) * 3 * C + 2 * C + h * D) };
  };
  const p = (n: string) => {
    const t = P.get(n);
    if (!t) throw new Error(`missing ${n}`);
    return t;
  };
  const wte = p('wte.weight');
  const wpe = p('wpe.weight');

  const x0 = new Float64Array(M * C);
  for (let r = 0; r < M; r++)
    for (let c = 0; c < C; c++) x0[r * C + c] = wte[tokens[r] * C + c] + wpe[(r % T) * C + c];

  type LayerCache = {
    xin: Float64Array;
    ln1: Float64Array;
    ln1c: LnCache;
    qkv: Float64Array;
    probs: Float64Array; // [B, H, T, T]
    atty: Float64Array;
    r1: Float64Array;
    ln2: Float64Array;
    ln2c: LnCache;
    f: Float64Array;
    g: Float64Array;
  };
  const caches: LayerCache[] = [];
  let x = x0;
  for (let l = 0; l < L; l++) {
    const pre = `h.${l}.`;
    const banded = pats[l] === 'banded';
    const { out: ln1, cache: ln1c } = layernorm(x, p(pre + 'ln_1.weight'), p(pre + 'ln_1.bias'), M, C, eps);
    const qkv = linear(ln1, p(pre + 'attn.c_attn.weight'), p(pre + 'attn.c_attn.bias'), M, C, 3 * C);
    const probs = new Float64Array(B * H * T * T);
    const atty = new Float64Array(M * C);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < T; i++) {
          const keys = rowKeys(b, h, i, banded);
          const r = attendRow(qkv, (b * T + i) * 3 * C + h * D, qkv, keys.k, qkv, keys.v, D, scale);
          const row = ((b * H + h) * T + i) * T;
          keys.j.forEach((j, n) => (probs[row + j] = r.p[n]));
          atty.set(r.out, (b * T + i) * C + h * D);
        }
    const proj = linear(atty, p(pre + 'attn.c_proj.weight'), p(pre + 'attn.c_proj.bias'), M, C, C);
    const r1 = new Float64Array(M * C);
    for (let i = 0; i < M * C; i++) r1[i] = x[i] + proj[i];
    const { out: ln2, cache: ln2c } = layernorm(r1, p(pre + 'ln_2.weight'), p(pre + 'ln_2.bias'), M, C, eps);
    const f = linear(ln2, p(pre + 'mlp.c_fc.weight'), p(pre + 'mlp.c_fc.bias'), M, C, 4 * C);
    const g = f.map(gelu);
    const mp = linear(g, p(pre + 'mlp.c_proj.weight'), p(pre + 'mlp.c_proj.bias'), M, 4 * C, C);
    const r2 = new Float64Array(M * C);
    for (let i = 0; i < M * C; i++) r2[i] = r1[i] + mp[i];
    caches.push({ xin: x, ln1, ln1c, qkv, probs, atty, r1, ln2, ln2c, f, g });
    x = r2;
  }
  const { out: lnf, cache: lnfc } = layernorm(x, p('ln_f.weight'), p('ln_f.bias'), M, C, eps);
  // logits = lnf @ wte^T
  const logits = new Float64Array(M * V);
  for (let r = 0; r < M; r++)
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += lnf[r * C + c] * wte[v * C + c];
      logits[r * V + v] = s;
    }
  let lossSum = 0;
  let count = 0;
  const dlogits = new Float64Array(M * V);
  if (targets) {
    for (let r = 0; r < M; r++) if (targets[r] >= 0) count++;
    for (let r = 0; r < M; r++) {
      const t = targets[r];
      if (t < 0) continue;
      let mx = -Infinity;
      for (let v = 0; v < V; v++) mx = Math.max(mx, logits[r * V + v]);
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v] - mx);
      const lse = mx + Math.log(s);
      lossSum += lse - logits[r * V + t];
      for (let v = 0; v < V; v++) dlogits[r * V + v] = Math.exp(logits[r * V + v] - lse) / count;
      dlogits[r * V + t] -= 1 / count;
    }
  }
  const result: RefResult = { logits, loss: count ? lossSum / count : NaN, count };
  if (!backward) return result;

  const G: Params64 = new Map();
  for (const [n, t] of P) G.set(n, new Float64Array(t.length));
  const gr = (n: string) => G.get(n)!;
  // head: logits = lnf @ wte^T
  const dlnf = new Float64Array(M * C);
  const dwte = gr('wte.weight');
  for (let r = 0; r < M; r++)
    for (let v = 0; v < V; v++) {
      const d = dlogits[r * V + v];
      if (d === 0) continue;
      for (let c = 0; c < C; c++) {
        dlnf[r * C + c] += d * wte[v * C + c];
        dwte[v * C + c] += d * lnf[r * C + c];
      }
    }
  let dx = layernormBack(dlnf, lnfc, p('ln_f.weight'), gr('ln_f.weight'), gr('ln_f.bias'), M, C);
  for (let l = L - 1; l >= 0; l--) {
    const pre = `h.${l}.`;
    const k = caches[l];
    const banded = pats[l] === 'banded';
    // r2 = r1 + mlp
    const dg = linearBack(dx, k.g, p(pre + 'mlp.c_proj.weight'), gr(pre + 'mlp.c_proj.weight'), gr(pre + 'mlp.c_proj.bias'), M, 4 * C, C);
    const df = dg.map((d, i) => d * geluGrad(k.f[i]));
    const dln2 = linearBack(df, k.ln2, p(pre + 'mlp.c_fc.weight'), gr(pre + 'mlp.c_fc.weight'), gr(pre + 'mlp.c_fc.bias'), M, C, 4 * C);
    const dr1a = layernormBack(dln2, k.ln2c, p(pre + 'ln_2.weight'), gr(pre + 'ln_2.weight'), gr(pre + 'ln_2.bias'), M, C);
    const dr1 = new Float64Array(M * C);
    for (let i = 0; i < M * C; i++) dr1[i] = dx[i] + dr1a[i];
    // r1 = x + proj(atty)
    const datty = linearBack(dr1, k.atty, p(pre + 'attn.c_proj.weight'), gr(pre + 'attn.c_proj.weight'), gr(pre + 'attn.c_proj.bias'), M, C, C);
    const dqkv = new Float64Array(M * 3 * C);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < T; i++) {
          const keys = rowKeys(b, h, i, banded);
          const row = ((b * H + h) * T + i) * T;
          const pr = Float64Array.from(keys.j, (j) => k.probs[row + j]);
          attendRowBackward(k.qkv, (b * T + i) * 3 * C + h * D, k.qkv, keys.k, k.qkv, keys.v, D, scale, pr,
            datty, (b * T + i) * C + h * D, dqkv, dqkv, dqkv);
        }
    const dln1 = linearBack(dqkv, k.ln1, p(pre + 'attn.c_attn.weight'), gr(pre + 'attn.c_attn.weight'), gr(pre + 'attn.c_attn.bias'), M, C, 3 * C);
    const dxa = layernormBack(dln1, k.ln1c, p(pre + 'ln_1.weight'), gr(pre + 'ln_1.weight'), gr(pre + 'ln_1.bias'), M, C);
    const nx = new Float64Array(M * C);
    for (let i = 0; i < M * C; i++) nx[i] = dr1[i] + dxa[i];
    dx = nx;
  }
  const dwpe = gr('wpe.weight');
  for (let r = 0; r < M; r++)
    for (let c = 0; c < C; c++) {
      dwte[tokens[r] * C + c] += dx[r * C + c];
      dwpe[(r % T) * C + c] += dx[r * C + c];
    }
  result.grads = G;
  return result;
}

/** Relative L2 error ||a - b|| / ||b||. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export function toF64(m: Map<string, Float32Array>): Params64 {
  return new Map([...m].map(([n, t]) => [n, Float64Array.from(t)]));
}
