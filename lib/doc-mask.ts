/**
 * Document masks for packed training sequences: the per-position document
 * starts the fused attention kernels take (AttnShape::doc_start in
 * native/core/backend.h; the C++ twin of these functions is
 * native/core/doc_mask.h, and the two agree element for element).
 *
 * Packing follows GPT-2: documents are concatenated, each followed by the
 * end-of-text token ("doc EOT doc EOT ..."), and a batch row is a window of
 * that stream. The EOT belongs to the document it ends; the position after an
 * EOT starts a new document, and so does position 0 of every row. With the
 * mask, query i of a row sees only keys j >= docStart[i] (and j <= i, within
 * the band when banded): never a key of an earlier document.
 */
import { expectInteger, expectPositiveInteger, rangeError, typeError } from './validate';

/**
 * docStart[b * seq + i] = the first position of the document that holds
 * position i of row b: 0 at i = 0, i when the token at i - 1 is `eot`, else
 * docStart[b * seq + i - 1].
 *
 * @param tokens the batch's token ids, [batch, seq] row-major (any integer array)
 * @param eot the end-of-text token id
 */
export function docStarts(tokens: ArrayLike<number>, batch: number, seq: number, eot: number): Int32Array {
  expectPositiveInteger('batch', batch);
  expectPositiveInteger('seq', seq);
  expectInteger('eot', eot, { min: 0 });
  if (tokens === null || typeof tokens !== 'object' || typeof (tokens as { length?: unknown }).length !== 'number')
    throw typeError('an array of token ids', 'tokens', tokens);
  if (tokens.length !== batch * seq)
    throw rangeError(`an array of ${batch * seq} token ids (batch ${batch} x seq ${seq})`, 'tokens', tokens);
  const out = new Int32Array(batch * seq);
  for (let b = 0; b < batch; b++) {
    const base = b * seq;
    let cur = 0;
    for (let i = 0; i < seq; i++) {
      if (i > 0 && tokens[base + i - 1] === eot) cur = i;
      out[base + i] = cur;
    }
  }
  return out;
}

/**
 * Checks what the attention kernels rely on, row by row: 0 <= docStart[i] <= i
 * and docStart never decreases along a row (any split of the rows into
 * contiguous documents passes). Throws an ArgumentRangeError naming the first
 * element that breaks it.
 */
export function checkDocStarts(docStart: Int32Array, batch: number, seq: number): void {
  expectPositiveInteger('batch', batch);
  expectPositiveInteger('seq', seq);
  if (!(docStart instanceof Int32Array)) throw typeError('an Int32Array', 'docStart', docStart);
  if (docStart.length !== batch * seq)
    throw rangeError(`an Int32Array of length ${batch * seq} (batch ${batch} x seq ${seq})`, 'docStart', docStart);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < seq; i++) {
      const k = b * seq + i;
      const lo = i === 0 ? 0 : docStart[k - 1];
      if (docStart[k] < lo || docStart[k] > i) {
        const what =
          i === 0
            ? `0 (position 0 of batch row ${b})`
            : `a document start between ${lo} (docStart[${k - 1}]) and ${i} (its position in batch row ${b})`;
        throw rangeError(what, `docStart[${k}]`, docStart[k]);
      }
    }
  }
}
