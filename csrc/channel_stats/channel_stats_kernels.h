// Launcher of the CUDA channel_stats kernels: raw device pointers and a stream, no torch
// types, so that the .cu compiles with nvcc alone (CMake builds it without a GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kanfast {
namespace cuda {

// x (and grad) contiguous (outer, channels, inner); histogram of `bins` bins over [lo, hi].
struct ChannelStatsShape {
  int64_t outer, channels, inner, bins;
  double lo, hi;
};

// Per-channel outputs (channels,), hist (channels, bins) zero-initialised; prod_* are null
// without grad. min/max/count/... are overwritten.
struct ChannelStatsOutputPointers {
  int64_t *count, *zeros, *nonpos, *hist;
  double *sum, *abs_sum, *m2, *min, *max, *prod_sum, *prod_abs_sum;
};

// Bytes of device workspace launch_channel_stats needs (per-block partials).
size_t channel_stats_workspace_bytes(ChannelStatsShape shape);

// T: float, double, __half or __nv_bfloat16; grad may be null. Accumulates in float32
// (float64 for double) per thread and in float64 across threads and blocks.
template <typename T>
cudaError_t launch_channel_stats(const T* x, const T* grad, ChannelStatsShape shape,
                                 ChannelStatsOutputPointers out, void* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace kanfast
