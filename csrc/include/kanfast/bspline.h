// Cox–de Boor B-spline bases: the one formula every backend evaluates (DESIGN.md §2).
//
// Written once for any "lane" type V: a plain float/double (one element per CUDA thread, the
// C++ unit tests) or a SIMD vector (the CPU kernels evaluate 8 or 16 features or pixels at once).
// Every operation used below (+ - * comparisons ?:) is element-wise for both.
//
// With l_j^k = (x - t_j)·r(k, j) and r(k, j) = 1/(t_{j+k} - t_j) (0 for an empty span),
//   B_{j,0} = [t_j <= x < t_{j+1}]
//   B_{j,k} = l_j^k·B_{j,k-1} + (1 - l_{j+1}^k)·B_{j+1,k-1}
//   dB_{j,K}/dx = K·(B_{j,K-1}·r(K, j) - B_{j+1,K-1}·r(K, j+1))
// (1 - l_{j+1}^k is (t_{j+k+1} - x)/(t_{j+k+1} - t_{j+1}), the usual right factor.) The
// arithmetic is spelled exactly as in kanfast/reference/bspline_basis.py — same operands, same
// association — so that, compiled without FMA contraction, every backend reproduces the
// reference bit for bit.
#pragma once

#if defined(__CUDACC__)
#define KF_HOST_DEVICE __host__ __device__
#else
#define KF_HOST_DEVICE
#endif

namespace kanfast {

// Knots per feature (G + 2K + 1) and spline orders accepted by every kernel.
constexpr int kMaxKnots = 128;
constexpr int kMaxSplineOrder = 7;

// 1 / (hi - lo), or 0 for an empty span: repeated knots then contribute 0, never 0/0 = NaN.
template <typename T>
KF_HOST_DEVICE inline T knot_span_reciprocal(T lo, T hi) {
  const T width = hi - lo;
  return width > T(0) ? T(1) / width : T(0);
}

// The element type of a lane type: V itself for scalars; SIMD headers specialise it.
template <typename V>
struct LaneScalar {
  using type = V;
};

// Calls fn(std::integral_constant<int, K>) for the runtime spline order K (1..kMaxSplineOrder),
// so that the kernels keep their O(K) state in registers.
template <int K>
struct SplineOrder {
  static constexpr int value = K;
};
template <typename Fn>
inline void dispatch_spline_order(int order, Fn&& fn) {  // host code: picks the kernel instance
  switch (order) {
    case 1: fn(SplineOrder<1>{}); break;
    case 2: fn(SplineOrder<2>{}); break;
    case 3: fn(SplineOrder<3>{}); break;
    case 4: fn(SplineOrder<4>{}); break;
    case 5: fn(SplineOrder<5>{}); break;
    case 6: fn(SplineOrder<6>{}); break;
    case 7: fn(SplineOrder<7>{}); break;
    default: break;  // callers validate 1 <= order <= kMaxSplineOrder
  }
}

// Streams the order-K bases of x (and optionally their derivatives) over the knot intervals
// from the last to the first: column j holds B_{j,0..K}, and needs only column j+1's values
// below order K and its left factors, so the state is O(K) whatever the number of knots.
//
// knot(j) -> V: t_j for every lane; recip(k, j) -> V: r(k, j), and 0 where j + k > num_knots - 1.
// emit(j, B_{j,K}, dB_{j,K}/dx) for j = num_knots-2-K down to 0, already 0 outside
// [t_0, t_last) and NaN for NaN x (dB is only computed when kDerivative).
template <int K, bool kDerivative, typename V, typename Knot, typename Recip, typename Emit>
KF_HOST_DEVICE inline void bspline_columns(V x, int num_knots, const Knot& knot, const Recip& recip, Emit&& emit) {
  using S = typename LaneScalar<V>::type;
  const V zero{};
  const V one = zero + S(1);
  // ±inf gives inf·0 = NaN in the recursion: outside the knots every value is 0; NaN stays NaN.
  // [t_0 <= x < t_last] as a difference of steps, not the & of two comparisons: GCC 12 builds
  // that & lane by lane on 64-byte vectors.
  const auto inside = (((x >= knot(0)) ? one : zero) - ((x >= knot(num_knots - 1)) ? one : zero)) > zero;
  const V outside_value = (x != x) ? x : zero;
  V next_B[K];      // B_{j+1, 0..K-1}
  V next_left[K + 1];  // l_{j+1}^{1..K}
  for (int k = 0; k < K; ++k) next_B[k] = zero;
  for (int k = 0; k <= K; ++k) next_left[k] = zero;
  V next_step = (x >= knot(num_knots - 1)) ? one : zero;  // [x >= t_{j+1}]
  for (int j = num_knots - 2; j >= 0; --j) {
    const V step = (x >= knot(j)) ? one : zero;
    const V offset = x - knot(j);
    V B[K + 1];
    V left[K + 1];
    B[0] = step - next_step;  // [t_j <= x < t_{j+1}] for non-decreasing knots
    for (int k = 1; k <= K; ++k) {
      left[k] = offset * recip(k, j);
      B[k] = left[k] * B[k - 1] + (one - next_left[k]) * next_B[k - 1];
    }
    if (j + K + 1 < num_knots) {
      V deriv = zero;
      if (kDerivative) {
        deriv = (zero + S(K)) * (B[K - 1] * recip(K, j) - next_B[K - 1] * recip(K, j + 1));
        deriv = inside ? deriv : outside_value;
      }
      emit(j, inside ? B[K] : outside_value, deriv);
    }
    for (int k = 0; k < K; ++k) next_B[k] = B[k];
    for (int k = 1; k <= K; ++k) next_left[k] = left[k];
    next_step = step;
  }
}

}  // namespace kanfast
