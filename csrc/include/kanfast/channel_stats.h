// Math of kanfast::channel_stats shared by the CPU and CUDA kernels: the exact merge of two
// partial (count, sum, M2) triples and the histogram bin of a value.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define KF_HOST_DEVICE __host__ __device__
#else
#define KF_HOST_DEVICE
#endif

namespace kanfast {

// Chan et al.'s parallel update: (na, sa, m2a) becomes the statistics of the union of both
// sets, with M2 the sum of squared deviations from the mean. Exact in exact arithmetic, and
// stable because it never subtracts two large sums of squares.
KF_HOST_DEVICE inline void chan_merge(int64_t& na, double& sa, double& m2a, int64_t nb, double sb, double m2b) {
  if (nb == 0) return;
  if (na == 0) {
    na = nb, sa = sb, m2a = m2b;
    return;
  }
  const double delta = sb / double(nb) - sa / double(na);
  m2a += m2b + delta * delta * (double(na) * double(nb) / double(na + nb));
  na += nb;
  sa += sb;
}

// Bin of v among `bins` equal bins over [lo, lo + bins/scale]; values outside are clamped
// into the first / last bin (so every finite value is counted), NaN gets -1 (not counted).
template <typename A>
KF_HOST_DEVICE inline int64_t histogram_bin(A v, A lo, A scale, int64_t bins) {
  const A t = (v - lo) * scale;
  if (t < A(0)) return 0;
  if (t >= A(bins)) return bins - 1;
  return t >= A(0) ? int64_t(t) : -1;
}

}  // namespace kanfast
