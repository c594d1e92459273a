// Launcher of the CUDA coupled_gather kernel: raw device pointers and a stream, no torch
// types, so that the .cu compiles with nvcc alone (CMake builds it without a GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kanfast {
namespace cuda {

enum class GatherDtype : int32_t { kFloat32, kFloat64, kFloat16, kBFloat16 };

// One tensor: src contiguous (outer, size, inner), dst contiguous (outer, size + (m - n)·block,
// inner); along the middle dim positions [offset, offset + n·block) hold n units of block
// positions each. scale_row / fresh_row: its row of the scale / fresh table, -1 for none.
struct GatherTensor {
  const void* src;
  void* dst;
  int64_t outer, size, inner;
  int64_t offset, block, n;
  int64_t scale_row, fresh_row;
  int64_t first;  // index of this tensor's first output element among all tensors' outputs
  GatherDtype dtype;
};

// For every tensor in one launch: new unit k of dst is unit index[k] of src times
// scale[scale_row·m + k], 0 where fresh[fresh_row·m + k]; positions outside the units are
// copied. tensors: device array of `count` entries sorted by `first`; total: all outputs'
// element count; index (m,) int64 in range; scale (R, m) float64 or null; fresh (F, m) bool or null.
cudaError_t launch_coupled_gather(const GatherTensor* tensors, int64_t count, int64_t total, const int64_t* index,
                                  int64_t m, const double* scale, const bool* fresh, cudaStream_t stream);

}  // namespace cuda
}  // namespace kanfast
