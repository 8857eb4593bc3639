#!/usr/bin/env bash
# Checks that every CUDA kernel the backend needs was compiled into the addon:
# `nm -C` lists the host stub of each __global__ function, so a stub backend
# (or a file left out of the build) fails here even without a GPU.
#
#   scripts/ci/check-cuda-kernels.sh [path/to/gpt_engine.node]
#
# Default: $GPT_ENGINE_ADDON, else build/Release/gpt_engine.node.
# Exit 0 when all are present, 1 when any is missing (each is named), 2 when
# the addon is missing or was built without CUDA.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
addon="${1:-${GPT_ENGINE_ADDON:-$root/build/Release/gpt_engine.node}}"
if [[ ! -f "$addon" ]]; then
  echo "check-cuda-kernels: no addon at $addon (build it with: npx cmake-js compile)" >&2
  exit 2
fi
if ! command -v nm >/dev/null; then
  echo "check-cuda-kernels: nm not found (install binutils)" >&2
  exit 2
fi
symbols="$(nm -C "$addon" 2>/dev/null | grep 'gpt::cuda::' || true)"
if [[ -z "$symbols" ]]; then
  echo "check-cuda-kernels: $addon has no gpt::cuda symbols: it was built without the CUDA backend" >&2
  exit 2
fi

# One line per kernel: the demangled name as nm -C prints it, up to '('.
expected=(
  # the tensor-core GEMM: layouts (NN, NT, TN) and the storage types of A, B and C it takes
  'gemm_bf16_tc_kernel<false, false, __nv_bfloat16, __nv_bfloat16, __nv_bfloat16>' 'gemm_bf16_tc_kernel<false, false, __nv_bfloat16, __nv_bfloat16, float>'
  'gemm_bf16_tc_kernel<false, false, float, __nv_bfloat16, float>' 'gemm_bf16_tc_kernel<false, false, float, float, float>'
  'gemm_bf16_tc_kernel<false, true, __nv_bfloat16, __nv_bfloat16, float>' 'gemm_bf16_tc_kernel<false, true, float, __nv_bfloat16, float>'
  'gemm_bf16_tc_kernel<false, true, float, float, float>' 'gemm_bf16_tc_kernel<true, false, __nv_bfloat16, float, float>'
  'gemm_bf16_tc_kernel<true, false, float, __nv_bfloat16, float>' 'gemm_bf16_tc_kernel<true, false, __nv_bfloat16, __nv_bfloat16, float>' 'gemm_bf16_tc_kernel<true, false, float, float, float>'
  'gemm_fp32_kernel<false, false>' 'gemm_fp32_kernel<false, true>' 'gemm_fp32_kernel<true, false>'
  'gemm_bf16_tc_gelu_kernel<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>' 'gemm_bf16_tc_gelu_kernel<float, float, float>' 'gemm_fp32_gelu_kernel'
  'colsum_partial_kernel' 'colsum_finish_kernel'
  'attention_fwd_kernel<64>' 'attention_fwd_kernel<80>' 'attention_fwd_kernel<96>' 'attention_fwd_kernel<128>'
  'attention_fwd_kv16_kernel<64>' 'attention_fwd_kv16_kernel<80>' 'attention_fwd_kv16_kernel<96>' 'attention_fwd_kv16_kernel<128>'
  'attention_bwd_q16_kernel<64>' 'attention_bwd_q16_kernel<80>' 'attention_bwd_q16_kernel<96>' 'attention_bwd_q16_kernel<128>'
  'attention_dvec_kernel'
  'attention_fp32_fwd_kernel<32>' 'attention_fp32_fwd_kernel<64>' 'attention_fp32_fwd_kernel<128>'
  'attention_fp32_fwd_kernel<256>'
  'attention_fp32_bwd_kernel<32>' 'attention_fp32_bwd_kernel<64>' 'attention_fp32_bwd_kernel<128>'
  'attention_fp32_bwd_kernel<256>'
  'attention_bwd_kernel<64>' 'attention_bwd_kernel<80>' 'attention_bwd_kernel<96>' 'attention_bwd_kernel<128>'
  'attention_bwd_dq_reduce_kernel'
  'layernorm_forward_kernel<float>' 'layernorm_forward_kernel<__nv_bfloat16>'
  'residual_layernorm_forward_kernel<float>' 'residual_layernorm_forward_kernel<__nv_bfloat16>'
  'layernorm_backward_dx_kernel' 'layernorm_backward_params_partial_kernel'
  'layernorm_backward_params_finish_kernel'
  'gelu_forward_kernel<__nv_bfloat16, __nv_bfloat16>' 'gelu_forward_kernel<__nv_bfloat16, float>' 'gelu_forward_kernel<float, __nv_bfloat16>' 'gelu_forward_kernel<float, float>'
  'gelu_backward_kernel<float>' 'gelu_backward_kernel<__nv_bfloat16>' 'add_kernel' 'scale_kernel'
  'convert_kernel<__nv_bfloat16, float>' 'convert_kernel<float, __nv_bfloat16>'
  'embedding_forward_kernel' 'embedding_backward_wpe_kernel' 'embedding_keys_kernel' 'bitonic_pass_kernel'
  'embedding_backward_wte_sorted_kernel'
  'crossentropy_kernel' 'loss_sum_kernel'
  'sum_squares_partial_kernel' 'sum_squares_finish_kernel' 'grad_scale_kernel'
  'adamw_kernel'
  'decode_kv_store_kernel<float>' 'decode_kv_store_kernel<__nv_bfloat16>'
  'decode_attention_chunk_kernel<float>' 'decode_attention_chunk_kernel<__nv_bfloat16>'
  'decode_attention_combine_kernel' 'decode_embedding_kernel'
)
missing=0
for k in "${expected[@]}"; do
  if ! grep -qF "::${k}(" <<<"$symbols"; then
    echo "MISSING kernel: $k" >&2
    missing=$((missing + 1))
  fi
done
if [[ $missing -gt 0 ]]; then
  echo "check-cuda-kernels: $missing of ${#expected[@]} kernels missing from $addon" >&2
  exit 1
fi
echo "check-cuda-kernels: all ${#expected[@]} kernels present in $addon"
