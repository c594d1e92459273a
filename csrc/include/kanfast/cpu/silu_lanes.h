// silu(x) = x / (1 + e^-x) and its gradient on SIMD lanes (lanes.h), so that the basis kernels
// can write a KAN layer's base path in the pass that reads x for the bases: ATen's silu costs
// a pass of its own over x and the feature buffer, and a copy when the buffer is strided.
// The formulas are ATen's (aten/src/ATen/native/cpu/Activation.cpp); e^x is evaluated here, to
// within a few units in the last place of the correctly rounded value. (ATen's Vectorized exp
// is fixed by ATen's own build-time CPU level, not by the instruction-set clones these kernels
// are compiled into, so it cannot serve their lanes.)
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#include "kanfast/cpu/lanes.h"

namespace kanfast {
namespace cpu {

template <typename T>
struct ExpConstants;
template <>
struct ExpConstants<float> {
  using Int = int32_t;
  static constexpr int kMantissaBits = 23, kExponentBias = 127, kDegree = 7;
  // e^x for x in [kMin, kMax] is a normal float; above it is taken as inf, below as 0.
  static constexpr float kMin = -87.0f, kMax = 88.0f;
  // ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with few significant bits: n·kLn2Hi is exact.
  static constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  static constexpr float kRoundShift = 12582912.0f;  // 1.5·2^23: (v + it) - it rounds v to an integer
};
template <>
struct ExpConstants<double> {
  using Int = int64_t;
  static constexpr int kMantissaBits = 52, kExponentBias = 1023, kDegree = 13;
  static constexpr double kMin = -708.0, kMax = 709.0;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kRoundShift = 6755399441055744.0;  // 1.5·2^52
};

// e^x per lane: x = n·ln 2 + r with |r| <= ln 2 / 2, e^r from its Taylor polynomial (degree 7
// for float, 13 for double: the remainder is below half an ulp), 2^n from the exponent bits.
// NaN stays NaN. The polynomial is evaluated by Estrin's scheme (pairs of terms, then pairs of
// pairs in r^2, r^4, ...): its dependency chain is ~log2 of Horner's, and in the basis kernels
// Horner's latency chain was most of the time of a silu pass.
template <typename V>
inline V exp_lanes(V x) {
  using S = typename LaneScalar<V>::type;
  using C = ExpConstants<S>;
  typedef typename C::Int IntV __attribute__((vector_size(sizeof(V))));
  const V zero{};
  const V clamped = (x > zero + C::kMax) ? zero + C::kMax : ((x < zero + C::kMin) ? zero + C::kMin : x);
  const V n = (clamped * S(1.4426950408889634) + C::kRoundShift) - C::kRoundShift;  // round(x / ln 2)
  const V r = (clamped - n * C::kLn2Hi) - n * C::kLn2Lo;
  constexpr int kTerms = C::kDegree + 1;
  V terms[kTerms];  // 1/k!, then combined in place level by level
  S inv_factorial = 1;
  for (int k = 0; k < kTerms; ++k) {
    if (k > 0) inv_factorial /= S(k);
    terms[k] = zero + inv_factorial;
  }
  V power = r;  // r^(2^level)
#pragma GCC unroll 8
  for (int count = kTerms; count > 1; count = (count + 1) / 2) {
#pragma GCC unroll 8
    for (int i = 0; i < count / 2; ++i) terms[i] = terms[2 * i] + terms[2 * i + 1] * power;
    if (count % 2) terms[count / 2] = terms[count - 1];
    power = power * power;
  }
  const V p = terms[0];
  const IntV bits = (__builtin_convertvector(n, IntV) + C::kExponentBias) << C::kMantissaBits;
  V scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const V inf = zero + std::numeric_limits<S>::infinity();
  return (x > zero + C::kMax) ? inf : ((x < zero + C::kMin) ? zero : p * scale);
}

// 1 + e^-x: silu(x) = x / it and sigmoid(x) = 1 / it, so a pass that needs both evaluates one exp.
template <typename V>
inline V silu_denominator(V x) {
  return V{} + 1 + exp_lanes(-x);
}

template <typename V>
inline V silu_lanes(V x) {
  return x / silu_denominator(x);
}

// grad · silu'(x) = grad · s · (1 + x·(1 - s)), s = sigmoid(x) = 1 / denominator
template <typename V>
inline V silu_backward_lanes(V grad, V x, V denominator) {
  const V one = V{} + 1;
  const V s = one / denominator;
  return grad * s * (one + x * (one - s));
}

}  // namespace cpu
}  // namespace kanfast
