/**
 * lib/doc-mask.ts: document starts from tokens (the end-of-text token belongs
 * to the document it ends) and the check of the contract the attention
 * kernels rely on. The kernels themselves: test/native/attention-docmask.test.ts
 * (which also holds the C++ builder, native/core/doc_mask.h, to this one) and
 * test/cuda/attention-docmask.test.ts.
 */
import { checkDocStarts, docStarts } from '../../lib/doc-mask';

const EOT = 50256;

describe('docStarts', () => {
  it('starts a document after each end-of-text token, and at every row start', () => {
    // row 0: a b EOT c EOT EOT d ; row 1: EOT a b c d e f
    const t = Int32Array.from([1, 2, EOT, 3, EOT, EOT, 4, EOT, 1, 2, 3, 4, 5, 6]);
    expect(Array.from(docStarts(t, 2, 7, EOT))).toEqual([0, 0, 0, 3, 3, 5, 6, 0, 1, 1, 1, 1, 1, 1]);
    // Every token an EOT: documents of length 1. Any integer array works.
    expect(Array.from(docStarts(new Uint16Array([7, 7, 7]), 1, 3, 7))).toEqual([0, 1, 2]);
    expect(Array.from(docStarts([5, 7, 5], 1, 3, 7))).toEqual([0, 0, 2]);
    // No EOT, or an EOT only at the end of the row: one document.
    expect(Array.from(docStarts([1, 2, 3, 1, 2, EOT], 2, 3, EOT))).toEqual([0, 0, 0, 0, 0, 0]);
    expect(Array.from(docStarts([EOT], 1, 1, EOT))).toEqual([0]);
  });

  it('gives starts that pass checkDocStarts', () => {
    let x = 12345;
    const t = new Int32Array(4 * 50);
    for (let i = 0; i < t.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      t[i] = x % 5 === 0 ? EOT : x % 1000;
    }
    const ds = docStarts(t, 4, 50, EOT);
    expect(() => checkDocStarts(ds, 4, 50)).not.toThrow();
    for (let i = 1; i < t.length; i++) if (i % 50 !== 0 && t[i - 1] === EOT) expect(ds[i]).toBe(i % 50);
  });

  it('names the field and what it expected on bad input', () => {
    expect(() => docStarts(new Int32Array(5), 2, 3, EOT)).toThrow(
      'Expected an array of 6 token ids (batch 2 x seq 3) for tokens but received a Int32Array of length 5');
    expect(() => docStarts(new Int32Array(6), 2, 3, -1)).toThrow(/for eot but received -1/);
    expect(() => docStarts(new Int32Array(6), 0, 3, 1)).toThrow(/for batch but received 0/);
    expect(() => docStarts(null as unknown as number[], 1, 3, 1)).toThrow(/array of token ids for tokens but received null/);
  });
});

describe('checkDocStarts', () => {
  it('accepts any split of the rows into contiguous documents', () => {
    expect(() => checkDocStarts(Int32Array.from([0, 1, 1, 3, 0, 0, 0, 0]), 2, 4)).not.toThrow();
    expect(() => checkDocStarts(Int32Array.from([0, 1, 2, 3]), 1, 4)).not.toThrow();
  });

  it('rejects the first element that breaks the contract, naming it', () => {
    expect(() => checkDocStarts(Int32Array.from([0, 0, 2, 1, 0, 0, 0, 0]), 2, 4)).toThrow(
      'Expected a document start between 2 (docStart[2]) and 3 (its position in batch row 0) for docStart[3] but received 1 (number)');
    expect(() => checkDocStarts(Int32Array.from([0, 0, 0, 4, 0, 0, 0, 0]), 2, 4)).toThrow(/for docStart\[3\] but received 4/);
    expect(() => checkDocStarts(Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1]), 2, 4)).toThrow(
      'Expected 0 (position 0 of batch row 1) for docStart[4] but received 1 (number)');
    expect(() => checkDocStarts(Int32Array.from([0, 0, 0, 0, 0, 0, -1, 0]), 2, 4)).toThrow(/for docStart\[6\] but received -1/);
    expect(() => checkDocStarts(new Int32Array(7), 2, 4)).toThrow(
      'Expected an Int32Array of length 8 (batch 2 x seq 4) for docStart but received a Int32Array of length 7');
    expect(() => checkDocStarts([0, 0] as unknown as Int32Array, 1, 2)).toThrow(/an Int32Array for docStart but received an array/);
  });
});
