// Cox–de Boor B-spline bases: the one formula every backend evaluates (DESIGN.md §2).
//
// Written once for any "lane" type V: a plain float/double (one element per CUDA thread, the
// C++ unit tests) or a SIMD vector (the CPU kernels evaluate 8 features or 8 pixels at once).
// Every operation used below (+ - * comparisons & ?:) is element-wise for both.
//
// The arithmetic is spelled exactly as in kanfast/reference/bspline_basis.py — same operands,
// same association, reciprocals of knot spans precomputed — so that, compiled without FMA
// contraction, every backend reproduces the reference bit for bit.
#pragma once

#if defined(__CUDACC__)
#define KF_HOST_DEVICE __host__ __device__
#else
#define KF_HOST_DEVICE
#endif

namespace kanfast {

// Knots per feature (G + 2K + 1) and spline orders accepted by every kernel; scratch arrays
// are sized by them, which bounds stack (CPU) and local memory (CUDA) use.
constexpr int kMaxKnots = 128;
constexpr int kMaxSplineOrder = 10;

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

// Order 0: B_j = 1 on the half-open interval [t_j, t_{j+1}).
// knot(j) gives t_j for every lane; B has num_knots - 1 entries.
template <typename V, typename Knot>
KF_HOST_DEVICE inline void bspline_order0(V x, int num_knots, const Knot& knot, V* B) {
  const V zero{};
  const V one = zero + 1;
  for (int j = 0; j + 1 < num_knots; ++j) {
    B[j] = ((x >= knot(j)) & (x < knot(j + 1))) ? one : zero;
  }
}

// Raises B from order k-1 to order k in place (ascending j reads B[j+1] before it changes):
//   B_j <- (x - t_j)·r(k, j)·B_j + (t_{j+k+1} - x)·r(k, j+1)·B_{j+1},  r(k, j) = 1/(t_{j+k} - t_j).
template <typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void bspline_raise_order(
    V x, int num_knots, int k, const Knot& knot, const Recip& recip, V* B) {
  for (int j = 0; j + k + 1 < num_knots; ++j) {
    B[j] = (x - knot(j)) * recip(k, j) * B[j] + (knot(j + k + 1) - x) * recip(k, j + 1) * B[j + 1];
  }
}

// dB_{j,K}/dx = K·(B_{j,K-1}·r(K, j) - B_{j+1,K-1}·r(K, j+1)), from the order K-1 bases B.
template <typename V, typename Recip>
KF_HOST_DEVICE inline void bspline_derivative(
    int num_knots, int order, const Recip& recip, const V* B, V* D) {
  const V k_lanes = V{} + static_cast<typename LaneScalar<V>::type>(order);
  for (int j = 0; j + order + 1 < num_knots; ++j) {
    D[j] = k_lanes * (B[j] * recip(order, j) - B[j + 1] * recip(order, j + 1));
  }
}

// Outside [t_0, t_last) every basis (and derivative) is 0 and NaN stays NaN. Inside, the
// recursion is already exact; outside it is 0 too except for x = ±inf, where inf·0 = NaN.
template <typename V, typename Mask>
KF_HOST_DEVICE inline V bspline_outside_to_zero(V x, Mask inside, V value) {
  const V zero{};
  return inside ? value : ((x != x) ? x : zero);
}

// Leaves the order-(order-1) bases in B (num_knots - 1 entries of scratch).
template <typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void bspline_bases_below(
    V x, int num_knots, int order, const Knot& knot, const Recip& recip, V* B) {
  bspline_order0(x, num_knots, knot, B);
  for (int k = 1; k < order; ++k) bspline_raise_order(x, num_knots, k, knot, recip, B);
}

// Bases of order `order` (>= 1) at x: B[0 .. num_knots-2-order] on return; B needs
// num_knots - 1 entries of scratch. With D non-null, D[0 .. num_knots-2-order] gets dB/dx.
template <typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void bspline_bases(
    V x, int num_knots, int order, const Knot& knot, const Recip& recip, V* B, V* D) {
  bspline_bases_below(x, num_knots, order, knot, recip, B);
  const int num_bases = num_knots - 1 - order;
  const auto inside = (x >= knot(0)) & (x < knot(num_knots - 1));
  if (D != nullptr) {
    bspline_derivative(num_knots, order, recip, B, D);
    for (int j = 0; j < num_bases; ++j) D[j] = bspline_outside_to_zero(x, inside, D[j]);
  }
  bspline_raise_order(x, num_knots, order, knot, recip, B);
  for (int j = 0; j < num_bases; ++j) B[j] = bspline_outside_to_zero(x, inside, B[j]);
}

// Only the derivatives dB_j/dx into D[0 .. num_knots-2-order]; B is scratch as above.
template <typename V, typename Knot, typename Recip>
KF_HOST_DEVICE inline void bspline_derivatives(
    V x, int num_knots, int order, const Knot& knot, const Recip& recip, V* B, V* D) {
  bspline_bases_below(x, num_knots, order, knot, recip, B);
  const auto inside = (x >= knot(0)) & (x < knot(num_knots - 1));
  bspline_derivative(num_knots, order, recip, B, D);
  for (int j = 0; j + order + 1 < num_knots; ++j) D[j] = bspline_outside_to_zero(x, inside, D[j]);
}

}  // namespace kanfast
