/**
 * Seeded random numbers for everything in TypeScript that must be
 * reproducible: the batch sampler (its state goes into checkpoints) and
 * sampling during generation (prompt i of a batch uses stream (seed, i), so
 * its output equals generating it alone).
 *
 * Generator: PCG-XSH-RR 64/32 (64-bit LCG state, 32-bit output), kept in two
 * BigInt words: small, fast enough for sampling, and its whole state is two
 * integers that serialize exactly.
 */

const MASK64 = (1n << 64n) - 1n;
const MULT = 6364136223846793005n;

export interface RngState {
  /** 64-bit state as a decimal string (exact in JSON) */
  state: string;
  /** 64-bit odd increment (selects the stream) as a decimal string */
  inc: string;
}

export class Rng {
  private state: bigint;
  private inc: bigint;

  /**
   * seed: any non-negative safe integer; stream: selects one of 2^63
   * independent sequences for the same seed.
   */
  constructor(seed: number | bigint = 0, stream: number | bigint = 0) {
    this.inc = ((BigInt(stream) << 1n) | 1n) & MASK64;
    this.state = 0n;
    this.nextU32();
    this.state = (this.state + (BigInt(seed) & MASK64)) & MASK64;
    this.nextU32();
  }

  static fromState(s: RngState): Rng {
    const r = new Rng(0, 0);
    r.state = BigInt(s.state) & MASK64;
    r.inc = BigInt(s.inc) & MASK64;
    return r;
  }

  getState(): RngState {
    return { state: this.state.toString(), inc: this.inc.toString() };
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const old = this.state;
    this.state = (old * MULT + this.inc) & MASK64;
    const xorshifted = Number((((old >> 18n) ^ old) >> 27n) & 0xffffffffn);
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << ((32 - rot) & 31))) >>> 0;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n) without modulo bias (n <= 2^32). */
  nextInt(n: number): number {
    if (!(n >= 1 && n <= 4294967296 && Number.isInteger(n))) throw new RangeError(`Expected an integer in [1, 2^32] for n but received ${n}`);
    if (n === 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}
