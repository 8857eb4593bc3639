// LayerNorm forward and backward over the last dimension C.
// Forward: one warp per row (two passes over the row: mean, then the
// centered variance, which is what the CPU reference computes); the fused
// residual + LayerNorm forward adds the residual in the first pass.
// Backward: one warp per row for dinp; dgamma/dbeta are column sums over all
// rows, done in two deterministic passes (per-256-row partials, then the
// chunks in order) instead of atomics.
#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int kRowsPerChunk = 256;

// The rest of one row's LayerNorm for the warp that owns it, given each
// lane's partial sum `s` of x over its elements (i = lane, lane + 32, ...):
// mean, variance pass, normalized output, and the row's statistics.
template <typename Out>
__device__ __forceinline__ void layernorm_row(Out* __restrict__ o, float* __restrict__ mean,
                                              float* __restrict__ rstd, const float* x, float s,
                                              const float* __restrict__ gamma, const float* __restrict__ beta, int row,
                                              int C, float eps, int lane) {
  const float mu = warp_sum(s) / C;
  float v = 0.0f;
  for (int i = lane; i < C; i += 32) {
    float d = x[i] - mu;
    v += d * d;
  }
  const float rs = rsqrtf(warp_sum(v) / C + eps);
  for (int i = lane; i < C; i += 32) store_f32(o, i, (x[i] - mu) * rs * gamma[i] + beta[i]);
  if (lane == 0) {
    mean[row] = mu;
    rstd[row] = rs;
  }
}

template <typename Out>
__global__ void layernorm_forward_kernel(Out* __restrict__ out, float* __restrict__ mean, float* __restrict__ rstd,
                                         const float* __restrict__ inp, const float* __restrict__ gamma,
                                         const float* __restrict__ beta, int M, int C, float eps) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const float* x = inp + (int64_t)row * C;
  float s = 0.0f;
  for (int i = lane; i < C; i += 32) s += x[i];
  layernorm_row(out + (int64_t)row * C, mean, rstd, x, s, gamma, beta, row, C, eps, lane);
}

// Fused residual add + LayerNorm, one warp per row: resid = a + b, written
// once, then normalized by the same layernorm_row (same per-lane summation
// order, so the same bits as add followed by layernorm_forward).
// resid may alias a or b, hence no __restrict__ on those three: lane l alone
// touches elements l, l + 32, ... of the row, and reads a[i], b[i] before it
// writes resid[i]; the later passes re-read resid[i] it wrote itself.
template <typename Out>
__global__ void residual_layernorm_forward_kernel(float* resid, Out* __restrict__ out, float* __restrict__ mean,
                                                  float* __restrict__ rstd, const float* a, const float* b,
                                                  const float* __restrict__ gamma, const float* __restrict__ beta,
                                                  int M, int C, float eps) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const int64_t off = (int64_t)row * C;
  float* x = resid + off;
  float s = 0.0f;
  for (int i = lane; i < C; i += 32) {
    const float r = a[off + i] + b[off + i];
    x[i] = r;
    s += r;
  }
  layernorm_row(out + off, mean, rstd, x, s, gamma, beta, row, C, eps, lane);
}

__global__ void layernorm_backward_dx_kernel(float* __restrict__ dinp, const float* __restrict__ dout,
                                             const float* __restrict__ inp, const float* __restrict__ gamma,
                                             const float* __restrict__ mean, const float* __restrict__ rstd, int M,
                                             int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const float* x = inp + (int64_t)row * C;
  const float* dy = dout + (int64_t)row * C;
  const float mu = mean[row], rs = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int i = lane; i < C; i += 32) {
    float dn = dy[i] * gamma[i];
    a += dn;
    b += dn * (x[i] - mu) * rs;
  }
  const float dn_mean = warp_sum(a) / C, dn_xhat_mean = warp_sum(b) / C;
  float* dx = dinp + (int64_t)row * C;
  for (int i = lane; i < C; i += 32) {
    float xhat = (x[i] - mu) * rs;
    float dn = dy[i] * gamma[i];
    dx[i] += (dn - dn_mean - xhat * dn_xhat_mean) * rs;
  }
}

// Block 32 x 8 threads: 32 columns, one chunk of rows. partial: [2][chunks][C].
__global__ void layernorm_backward_params_partial_kernel(float* __restrict__ partial, const float* __restrict__ dout,
                                                         const float* __restrict__ inp,
                                                         const float* __restrict__ mean,
                                                         const float* __restrict__ rstd, int M, int C) {
  __shared__ float sg[8][33], sb[8][33];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const int col = blockIdx.x * 32 + tx;
  const int r0 = blockIdx.y * kRowsPerChunk, r1 = min(M, r0 + kRowsPerChunk);
  float g = 0.0f, b = 0.0f;
  if (col < C)
    for (int r = r0 + ty; r < r1; r += 8) {
      float dy = dout[(int64_t)r * C + col];
      g += dy * (inp[(int64_t)r * C + col] - mean[r]) * rstd[r];
      b += dy;
    }
  sg[ty][tx] = g;
  sb[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && col < C) {
    float tg = 0.0f, tb = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      tg += sg[i][tx];
      tb += sb[i][tx];
    }
    const int64_t chunks = gridDim.y;
    partial[(int64_t)blockIdx.y * C + col] = tg;
    partial[(chunks + blockIdx.y) * C + col] = tb;
  }
}

__global__ void layernorm_backward_params_finish_kernel(float* __restrict__ dgamma, float* __restrict__ dbeta,
                                                        const float* __restrict__ partial, int chunks, int C) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= C) return;
  float g = 0.0f, b = 0.0f;
  for (int c = 0; c < chunks; ++c) {
    g += partial[(int64_t)c * C + col];
    b += partial[((int64_t)chunks + c) * C + col];
  }
  dgamma[col] += g;
  dbeta[col] += b;
}

}  // namespace

void layernorm_forward(TensorRef out, float* mean, float* rstd, const float* inp, const float* gamma, const float* beta,
                       int M, int C, float eps, cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  if (out.bf16())
    layernorm_forward_kernel<__nv_bfloat16><<<ceil_div(M, 8), 256, 0, s>>>(static_cast<__nv_bfloat16*>(out.ptr), mean, rstd, inp,
                                                            gamma, beta, M, C, eps);
  else
    layernorm_forward_kernel<float><<<ceil_div(M, 8), 256, 0, s>>>(static_cast<float*>(out.ptr), mean, rstd, inp, gamma,
                                                            beta, M, C, eps);
  CUDA_CHECK_LAUNCH("layernorm_forward");
}

void residual_layernorm_forward(float* resid, TensorRef out, float* mean, float* rstd, const float* a, const float* b,
                                const float* gamma, const float* beta, int M, int C, float eps, cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  if (out.bf16())
    residual_layernorm_forward_kernel<__nv_bfloat16><<<ceil_div(M, 8), 256, 0, s>>>(
        resid, static_cast<__nv_bfloat16*>(out.ptr), mean, rstd, a, b, gamma, beta, M, C, eps);
  else
    residual_layernorm_forward_kernel<float><<<ceil_div(M, 8), 256, 0, s>>>(resid, static_cast<float*>(out.ptr), mean, rstd,
                                                                      a, b, gamma, beta, M, C, eps);
  CUDA_CHECK_LAUNCH("residual_layernorm_forward");
}

size_t layernorm_backward_scratch_floats(int M, int C) { return 2 * (size_t)ceil_div(M, kRowsPerChunk) * (size_t)C; }

void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                        const float* gamma, const float* mean, const float* rstd, int M, int C, float* scratch,
                        cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  layernorm_backward_dx_kernel<<<ceil_div(M, 8), 256, 0, s>>>(dinp, dout, inp, gamma, mean, rstd, M, C);
  CUDA_CHECK_LAUNCH("layernorm_backward (dinp)");
  const int chunks = ceil_div(M, kRowsPerChunk);
  layernorm_backward_params_partial_kernel<<<dim3(ceil_div(C, 32), chunks), 256, 0, s>>>(scratch, dout, inp, mean,
                                                                                          rstd, M, C);
  CUDA_CHECK_LAUNCH("layernorm_backward (dgamma, dbeta partial sums)");
  layernorm_backward_params_finish_kernel<<<ceil_div(C, 256), 256, 0, s>>>(dgamma, dbeta, scratch, chunks, C);
  CUDA_CHECK_LAUNCH("layernorm_backward (dgamma, dbeta final sums)");
}

}  // namespace cuda
}  // namespace gpt
