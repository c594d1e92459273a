// Launcher of the CUDA coupled_gather kernel: raw device pointers and a stream, no torch
// types, so that the .cu compiles with nvcc alone (CMake builds it without a GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kanfast {
namespace cuda {

enum class GatherDtype : int32_t { kFloat32, kFloat64, kFloat16, kBFloat16 };

// One tensor: src contiguous (outer, n, inner), dst contiguous (outer, m, inner).
struct GatherTensor {
  const void* src;
  void* dst;
  int64_t outer, n, inner;
  int64_t first;  // index of this tensor's first output element among all tensors' outputs
  GatherDtype dtype;
};

// dst[o, k, :] = src[o, index[k], :] * scale[k], 0 where fresh[k], for every tensor in one
// launch. tensors: device array of `count` entries sorted by `first`; total: all outputs'
// element count; index (m,) int64 in range; scale (m,) float64 or null; fresh (m,) bool or null.
cudaError_t launch_coupled_gather(const GatherTensor* tensors, int64_t count, int64_t total, const int64_t* index,
                                  int64_t m, const double* scale, const bool* fresh, cudaStream_t stream);

}  // namespace cuda
}  // namespace kanfast
