// CUDA kernels of kanfast::channel_stats. Block (c, s) reduces split s of channel c's
// outer·inner elements: each thread keeps a Welford mean/M2 and the other sums of its
// elements, the block merges its threads in float64 (Chan's formula) and writes one partial;
// a second kernel merges the splits of each channel in a fixed order (deterministic).
// Histograms are counted with 64-bit atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>

#include "channel_stats_kernels.h"
#include "kanfast/channel_stats.h"

namespace kanfast {
namespace cuda {

namespace {

constexpr int kThreads = 256;
// Enough blocks per channel to fill the GPU when there are few channels, few enough that
// the partials stay small.
constexpr int64_t kElemsPerBlock = int64_t(1) << 16;
constexpr int64_t kMaxSplits = 512;

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};

__device__ inline float to_acc(float v) { return v; }
__device__ inline double to_acc(double v) { return v; }
__device__ inline float to_acc(__half v) { return __half2float(v); }
__device__ inline float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

// One thread's or one block's statistics, float64 once merged.
struct Stats {
  int64_t n, zeros, nonpos;
  double sum, m2, abs_sum, prod, prod_abs, mn, mx;
};

__device__ inline void merge(Stats& a, const Stats& b) {
  chan_merge(a.n, a.sum, a.m2, b.n, b.sum, b.m2);
  a.zeros += b.zeros, a.nonpos += b.nonpos;
  a.abs_sum += b.abs_sum, a.prod += b.prod, a.prod_abs += b.prod_abs;
  a.mn = fmin(a.mn, b.mn), a.mx = fmax(a.mx, b.mx);
}

struct Splits {
  int64_t count, per_split;
};

__host__ __device__ inline Splits splits_of(ChannelStatsShape s) {
  const int64_t elems = s.outer * s.inner;
  int64_t count = (elems + kElemsPerBlock - 1) / kElemsPerBlock;
  count = count < 1 ? 1 : (count > kMaxSplits ? kMaxSplits : count);
  const int64_t per = (elems + count - 1) / count;
  return {(elems + per - 1) / per, per};
}

template <typename T>
__global__ void partial_kernel(const T* __restrict__ x, const T* __restrict__ grad, ChannelStatsShape shape,
                               Splits splits, Stats* __restrict__ partials, unsigned long long* __restrict__ hist) {
  using A = typename AccOf<T>::type;
  const int64_t c = blockIdx.x, s = blockIdx.y, C = shape.channels, inner = shape.inner;
  const int64_t start = s * splits.per_split;
  const int64_t stop = min(start + splits.per_split, shape.outer * inner);
  const A lo = A(shape.lo), scale = shape.bins > 0 ? A(double(shape.bins) / (shape.hi - shape.lo)) : A(0);
  int64_t n = 0, zeros = 0, nonpos = 0;
  A mean = 0, m2 = 0, sum = 0, abs_sum = 0, prod = 0, prod_abs = 0, mn = INFINITY, mx = -INFINITY;
  for (int64_t e = start + threadIdx.x; e < stop; e += kThreads) {
    const int64_t offset = ((e / inner) * C + c) * inner + e % inner;
    const A v = to_acc(x[offset]);
    ++n;
    const A delta = v - mean;
    mean += delta / A(n);
    m2 += delta * (v - mean);
    sum += v, abs_sum += fabs(v);
    mn = fmin(mn, v), mx = fmax(mx, v);
    zeros += v == A(0), nonpos += v <= A(0);
    if (grad != nullptr) {
      const A p = v * to_acc(grad[offset]);
      prod += p, prod_abs += fabs(p);
    }
    if (shape.bins > 0) {
      const int64_t b = histogram_bin(v, lo, scale, shape.bins);
      if (b >= 0) atomicAdd(hist + c * shape.bins + b, 1ull);
    }
  }
  // The thread's sum is accumulated directly (not mean·n) so that the block sum is exact-er.
  __shared__ Stats block[kThreads];
  block[threadIdx.x] = Stats{n, zeros, nonpos, double(sum), double(m2), double(abs_sum), double(prod),
                             double(prod_abs), double(mn), double(mx)};
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) merge(block[threadIdx.x], block[threadIdx.x + half]);
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[s * C + c] = block[0];
}

__global__ void finish_kernel(const Stats* __restrict__ partials, int64_t channels, int64_t splits,
                              ChannelStatsOutputPointers out) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= channels) return;
  Stats total = partials[c];
  for (int64_t s = 1; s < splits; ++s) merge(total, partials[s * channels + c]);
  out.count[c] = total.n, out.zeros[c] = total.zeros, out.nonpos[c] = total.nonpos;
  out.sum[c] = total.sum, out.abs_sum[c] = total.abs_sum, out.m2[c] = total.m2;
  out.min[c] = total.mn, out.max[c] = total.mx;
  if (out.prod_sum != nullptr) out.prod_sum[c] = total.prod, out.prod_abs_sum[c] = total.prod_abs;
}

}  // namespace

size_t channel_stats_workspace_bytes(ChannelStatsShape shape) {
  return size_t(splits_of(shape).count) * size_t(shape.channels) * sizeof(Stats);
}

template <typename T>
cudaError_t launch_channel_stats(const T* x, const T* grad, ChannelStatsShape shape,
                                 ChannelStatsOutputPointers out, void* workspace, cudaStream_t stream) {
  const Splits splits = splits_of(shape);
  Stats* partials = static_cast<Stats*>(workspace);
  const dim3 grid(unsigned(shape.channels), unsigned(splits.count));
  partial_kernel<T><<<grid, kThreads, 0, stream>>>(x, grad, shape, splits, partials,
                                                    reinterpret_cast<unsigned long long*>(out.hist));
  const unsigned finish_blocks = unsigned((shape.channels + kThreads - 1) / kThreads);
  finish_kernel<<<finish_blocks, kThreads, 0, stream>>>(partials, shape.channels, splits.count, out);
  return cudaGetLastError();
}

#define KF_INSTANTIATE(T)                                                                               \
  template cudaError_t launch_channel_stats<T>(const T*, const T*, ChannelStatsShape, ChannelStatsOutputPointers, \
                                               void*, cudaStream_t);
KF_INSTANTIATE(float)
KF_INSTANTIATE(double)
KF_INSTANTIATE(__half)
KF_INSTANTIATE(__nv_bfloat16)
#undef KF_INSTANTIATE

}  // namespace cuda
}  // namespace kanfast
