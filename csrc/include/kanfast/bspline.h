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

// The recursion's state between knot intervals: column j+1's B_{j+1, 0..K-1}, its left factors
// l_{j+1}^{1..K} and its step [x >= t_{j+1}].
template <typename V, int K>
struct SplineColumn {
  V B[K];
  V left[K + 1];
  V step;
};

// Column j from column j+1 (`next`): B_{j, 0..L}, l_j^{1..min(L+1, K)} and [x >= t_j]. The
// interval's B_{j, L+1..K} are left out when nothing emitted depends on them.
template <int K, int L, typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void spline_column(int j, V x, const Knot& knot, const Recip& recip,
                                         const SplineColumn<V, K>& next, V (&B)[K + 1], V (&left)[K + 1],
                                         V& step) {
  using S = typename LaneScalar<V>::type;
  const V zero{};
  const V one = zero + S(1);
  step = (x >= knot(j)) ? one : zero;
  const V offset = x - knot(j);
  B[0] = step - next.step;  // [t_j <= x < t_{j+1}] for non-decreasing knots
  for (int k = 1; k <= K; ++k) {
    if (k <= L + 1) left[k] = offset * recip(k, j);
    if (k <= L) B[k] = left[k] * B[k - 1] + (one - next.left[k]) * next.B[k - 1];
  }
}

template <typename V, int K>
KF_HOST_DEVICE inline void advance(SplineColumn<V, K>& next, const V (&B)[K + 1], const V (&left)[K + 1], V step) {
  for (int k = 0; k < K; ++k) next.B[k] = B[k];
  for (int k = 1; k <= K; ++k) next.left[k] = left[k];
  next.step = step;
}

// The last K intervals, j = num_knots-2-T for T = 0..K-1: none emits a basis, and interval j
// feeds only B_{j, 0..T} forward (B_{j,k} reaches an emitted B_{i,K}, i <= num_knots-2-K, only
// for k <= T), so it computes only those levels.
template <int K, int T, typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void spline_top_columns(int num_knots, V x, const Knot& knot, const Recip& recip,
                                              SplineColumn<V, K>& next) {
  if constexpr (T < K) {
    V B[K + 1];
    V left[K + 1];
    V step;
    for (int k = 0; k <= K; ++k) B[k] = left[k] = V{};
    spline_column<K, T>(num_knots - 2 - T, x, knot, recip, next, B, left, step);
    advance(next, B, left, step);
    spline_top_columns<K, T + 1>(num_knots, x, knot, recip, next);
  }
}

// Streams the order-K bases of x (and optionally their derivatives) over the knot intervals
// from the last to the first: column j holds B_{j,0..K}, and needs only column j+1's values
// below order K and its left factors, so the state is O(K) whatever the number of knots.
//
// knot(j) -> V: t_j for every lane; recip(k, j) -> V: r(k, j), and 0 where j + k > num_knots - 1.
// num_knots >= K + 2. emit(j, B_{j,K}, dB_{j,K}/dx) for j = num_knots-2-K down to 0, already 0
// outside [t_0, t_last) and NaN for NaN x (dB is only computed when kDerivative).
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
  SplineColumn<V, K> next;  // column j+1
  for (int k = 0; k < K; ++k) next.B[k] = zero;
  for (int k = 0; k <= K; ++k) next.left[k] = zero;
  next.step = (x >= knot(num_knots - 1)) ? one : zero;  // [x >= t_{j+1}]
  spline_top_columns<K, 0>(num_knots, x, knot, recip, next);
  for (int j = num_knots - 2 - K; j >= 0; --j) {
    V B[K + 1];
    V left[K + 1];
    V step;
    spline_column<K, K>(j, x, knot, recip, next, B, left, step);
    V deriv = zero;
    if (kDerivative) {
      deriv = (zero + S(K)) * (B[K - 1] * recip(K, j) - next.B[K - 1] * recip(K, j + 1));
      deriv = inside ? deriv : outside_value;
    }
    emit(j, inside ? B[K] : outside_value, deriv);
    advance(next, B, left, step);
  }
}

}  // namespace kanfast
