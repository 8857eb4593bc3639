// Seeded token batches and a weight checksum shared by the main thread and the
// scripts it runs in workers and child processes (test/helpers/child-*.js),
// so both sides compute the same inputs without sharing memory.
'use strict';

/** n ids in [0, V) from a xorshift32 stream seeded by `seed`. */
function batchOf(seed, n, V) {
  let x = (seed * 2654435761) >>> 0 || 1;
  const t = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    t[i] = x % V;
  }
  return t;
}

/** A position-weighted sum of the bit patterns of every tensor (mod 2^32): equal weights give equal sums. */
function checksum(params) {
  let h = 0;
  for (const [, a] of params) {
    const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (let i = 0; i < u.length; i++) h = (h + u[i] * (1 + (i % 7))) >>> 0;
  }
  return h;
}

module.exports = { batchOf, checksum };
