// CUDA kernel of kanfast::coupled_gather: one launch for every tensor of the call, whatever
// their dtypes and rules. Threads stride over the concatenated output elements of all
// tensors; each finds its tensor by binary search in the (few-entry) table, then its
// (outer, position, inner) place and the source position of that place.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "coupled_gather_kernels.h"

namespace kanfast {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // grid-stride beyond this: enough to fill any GPU

// The product rounded once to T, as torch multiplies by a scale converted to T: for half
// types torch converts float64 through float32, and the float product of two halves is exact.
__device__ inline float scaled(float v, double s) { return v * float(s); }
__device__ inline double scaled(double v, double s) { return v * s; }
__device__ inline __half scaled(__half v, double s) {
  return __float2half_rn(__half2float(v) * __half2float(__float2half_rn(float(s))));
}
__device__ inline __nv_bfloat16 scaled(__nv_bfloat16 v, double s) {
  return __float2bfloat16_rn(__bfloat162float(v) * __bfloat162float(__float2bfloat16_rn(float(s))));
}

template <typename T>
__device__ inline void gather_one(const GatherTensor& t, int64_t local, const int64_t* index, int64_t m,
                                  const double* scale, const bool* fresh) {
  const int64_t out_size = t.size + (m - t.n) * t.block;
  const int64_t j = local % t.inner, row = local / t.inner, p = row % out_size, o = row / out_size;
  const int64_t rel = p - t.offset;
  T* dst = static_cast<T*>(t.dst) + local;
  const T* src = static_cast<const T*>(t.src) + o * t.size * t.inner + j;
  if (rel < 0 || rel >= m * t.block) {  // outside the units: carried, from m - n units further back after them
    *dst = src[(rel < 0 ? p : p - (m - t.n) * t.block) * t.inner];
    return;
  }
  const int64_t k = rel / t.block;
  if (t.fresh_row >= 0 && fresh[t.fresh_row * m + k]) {
    *dst = T(0.0f);
    return;
  }
  const T v = src[(t.offset + index[k] * t.block + rel % t.block) * t.inner];
  *dst = t.scale_row >= 0 ? scaled(v, scale[t.scale_row * m + k]) : v;
}

__global__ void coupled_gather_kernel(const GatherTensor* __restrict__ tensors, int64_t count, int64_t total,
                                      const int64_t* __restrict__ index, int64_t m, const double* __restrict__ scale,
                                      const bool* __restrict__ fresh) {
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kThreads) {
    int64_t lo = 0, hi = count - 1;  // the last tensor whose first element is <= e
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (tensors[mid].first <= e) lo = mid;
      else hi = mid - 1;
    }
    const GatherTensor& t = tensors[lo];
    const int64_t local = e - t.first;
    switch (t.dtype) {
      case GatherDtype::kFloat32: gather_one<float>(t, local, index, m, scale, fresh); break;
      case GatherDtype::kFloat64: gather_one<double>(t, local, index, m, scale, fresh); break;
      case GatherDtype::kFloat16: gather_one<__half>(t, local, index, m, scale, fresh); break;
      case GatherDtype::kBFloat16: gather_one<__nv_bfloat16>(t, local, index, m, scale, fresh); break;
    }
  }
}

}  // namespace

cudaError_t launch_coupled_gather(const GatherTensor* tensors, int64_t count, int64_t total, const int64_t* index,
                                  int64_t m, const double* scale, const bool* fresh, cudaStream_t stream) {
  if (total == 0) return cudaSuccess;
  const int64_t needed = (total + kThreads - 1) / kThreads;
  const unsigned blocks = unsigned(needed < kMaxBlocks ? needed : kMaxBlocks);
  coupled_gather_kernel<<<blocks, kThreads, 0, stream>>>(tensors, count, total, index, m, scale, fresh);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace kanfast
