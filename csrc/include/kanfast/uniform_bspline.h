// B-spline bases on a uniform knot vector t_j = t_0 + j·h: the layers' grid until update_grid
// moves it, and the CPU kernels' float32 fast path (bspline_cpu.cpp).
//
// There every basis is a shifted copy of one cardinal B-spline. With u = (x - t_0)/h, the
// interval i = floor(u) and f = u - i, the K+1 bases that are non-zero, B_{i-m,K} for
// m = 0..K, are polynomials in f alone, built by the same recursion on the knots 0, 1, 2, ...:
//   b_m^0 = [m == 0],  b_m^k = ((f + m)·b_m^{k-1} + (k + 1 - m - f)·b_{m-1}^{k-1}) / k
//   dB_{i-m,K}/dx = (b_m^{K-1} - b_{m-1}^{K-1}) / h.
// That is one interval's O(K²) work instead of the O(K) per interval the dense recursion
// (bspline.h) does over all G+2K of them; placing b_m in the output is a select per basis.
//
// The price is rounding, not semantics: u carries a rounding error of a few ulp of (x - t_0)/h,
// and a grid stored in float is uniform only to an ulp of its knots, so results agree with the
// reference within the tolerance that tests/tolerances.py states ("bspline_uniform"), not bit
// for bit. An x within an ulp of a knot may fall in the neighbouring interval; for K >= 2 the
// bases and their derivative are continuous there, which is why only K >= 2 takes this path.
#pragma once

#include <cmath>

#include "kanfast/bspline.h"

namespace kanfast {

// floor() of a lane type, for u in [-1, num_knots - 1]: std::floor for scalars; SIMD headers
// specialise it.
template <typename V>
struct LaneFloor {
  static V apply(V u) { return std::floor(u); }
};

// Emits (j, B_{j,K}, dB_{j,K}/dx) for j = 0..num_knots-2-K in ascending order, 0 outside
// [t_0, t_last) and NaN for NaN x, like bspline_columns. origin: t_0; inv_step: 1/h.
template <int K, bool kDerivative, typename V, typename Emit>
inline void uniform_bspline_columns(V x, V origin, V inv_step, int num_knots, Emit&& emit) {
  static_assert(K >= 2, "order-1 bases jump in their derivative at the knots: use bspline_columns");
  using S = typename LaneScalar<V>::type;
  const V zero{};
  const S last = S(num_knots - 1);  // u >= last: at or past t_last
  V u = (x - origin) * inv_step;
  u = (u < S(-1)) ? zero - S(1) : u;  // ±inf clamp into no interval; NaN stays NaN
  u = (u > last) ? zero + last : u;
  const V interval = LaneFloor<V>::apply(u);
  const V f = u - interval;

  V b[K + 1];       // b_m^k, for the current level k
  V below[K + 1];   // b_m^{K-1}, kept for the derivative
  b[0] = zero + S(1);
#pragma GCC unroll 8
  for (int k = 1; k <= K; ++k) {
#pragma GCC unroll 8
    for (int m = 0; m < k; ++m) below[m] = b[m];
    const S inv_k = S(1) / S(k);
#pragma GCC unroll 8
    for (int m = 0; m <= k; ++m) {
      V v = zero;
      if (m < k) v = (f + S(m)) * inv_k * below[m];
      if (m > 0) v = v + (S(k + 1 - m) - f) * inv_k * below[m - 1];
      b[m] = v;
    }
  }
  V d[K + 1];
  if (kDerivative) {
#pragma GCC unroll 8
    for (int m = 0; m <= K; ++m) {
      V v = zero;
      if (m < K) v = below[m];
      if (m > 0) v = v - below[m - 1];
      d[m] = v * inv_step;
    }
  }

  // Walk the intervals n upwards with a window of the K+1 bases n-K..n that interval n can
  // touch: one comparison per interval, and basis n-K is complete once interval n is done.
  const auto is_nan = x != x;
  V window[K + 1], d_window[K + 1];  // [m]: basis n - m
#pragma GCC unroll 8
  for (int m = 0; m <= K; ++m) window[m] = d_window[m] = zero;
  V n_lanes = zero;
  for (int n = 0; n < num_knots - 1; ++n, n_lanes = n_lanes + S(1)) {
#pragma GCC unroll 8
    for (int m = K; m > 0; --m) {
      window[m] = window[m - 1];
      if (kDerivative) d_window[m] = d_window[m - 1];
    }
    window[0] = d_window[0] = zero;
    const auto here = interval == n_lanes;
#pragma GCC unroll 8
    for (int m = 0; m <= K; ++m) {
      window[m] = here ? b[m] : window[m];
      if (kDerivative) d_window[m] = here ? d[m] : d_window[m];
    }
    if (n >= K) emit(n - K, is_nan ? x : window[K], kDerivative ? (is_nan ? x : d_window[K]) : zero);
  }
}

}  // namespace kanfast
