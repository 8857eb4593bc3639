// Document masks for packed training sequences: the per-position document
// starts that AttnShape::doc_start points at (native/core/backend.h), built
// from token ids on the host. The TypeScript twin is lib/doc-mask.ts.
//
// Packing follows GPT-2: documents are concatenated, each one followed by the
// end-of-text token ("doc EOT doc EOT ..."), and a batch row is a window of
// that stream. The EOT belongs to the document it ends; the position after an
// EOT starts a new document; position 0 of a row starts one too (the row may
// begin in the middle of a document: its earlier part is simply not there).
// So with the mask, the query at an EOT still sees its own document, and the
// first token of the next document is predicted from that EOT's context, as
// without the mask; no query sees a key of an earlier document.
//
// Legend: B batch, T sequence; position i of row b is element b*T + i.
#pragma once
#include <cstdint>
#include <string>

#include "error.h"

namespace gpt {

// doc_start[b*T + i] = the first position of the document that holds
// position i of row b: 0 at i = 0, i after an EOT at i - 1, else
// doc_start[b*T + i - 1].
inline void doc_starts_from_tokens(const int32_t* tokens, int B, int T, int32_t eot, int32_t* doc_start) {
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* t = tokens + b * T;
    int32_t* s = doc_start + b * T;
    int32_t cur = 0;
    for (int32_t i = 0; i < T; ++i) {
      if (i > 0 && t[i - 1] == eot) cur = i;
      s[i] = cur;
    }
  }
}

// The contract the attention kernels rely on, for each row: 0 <= s[i] <= i
// and s never decreases along the row (what any split of a row into
// contiguous documents gives). Throws INVALID_ARGUMENT naming the first
// element that breaks it.
inline void check_doc_starts(const int32_t* doc_start, int B, int T) {
  for (int64_t b = 0; b < B; ++b) {
    const int32_t* s = doc_start + b * T;
    for (int32_t i = 0; i < T; ++i) {
      const int32_t lo = i == 0 ? 0 : s[i - 1];
      if (s[i] < lo || s[i] > i)
        throw GptError(ErrorCode::InvalidArgument,
                       "Expected document starts with docStart[i - 1] <= docStart[i] <= i (i the position in its "
                       "row) for docStart[" +
                           std::to_string(b * T + i) + "] (batch row " + std::to_string(b) + ", position " +
                           std::to_string(i) + ") but received " + std::to_string(s[i]));
    }
  }
}

}  // namespace gpt
