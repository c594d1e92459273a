// SIMD lanes for the CPU kernels, as GCC/Clang vector extensions: the same source compiles to
// AVX-512 in the x86-64-v4 clone of each kernel, to AVX2+FMA in the x86-64-v3 clone and to
// SSE2 in the baseline clone, picked at load time (KF_CPU_CLONES), so one binary runs on
// every x86-64 CPU. Vectors come in two sizes: 32 bytes (one AVX2 register) and 64 bytes (one
// AVX-512 register, two AVX2 ones); kernels that take both pick one per call (the lanes a
// call leaves empty cost as much as full ones).
#pragma once

#include <cstdint>
#include <cstring>

#include "kanfast/bspline.h"
#include "kanfast/uniform_bspline.h"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
// flatten: the hot loops' callees must be inlined into each clone to get its instruction set.
#define KF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define KF_CPU_CLONES __attribute__((flatten))
#endif

namespace kanfast {
namespace cpu {

// Bytes = 32: 8 floats or 4 doubles; 64: 16 floats or 8 doubles.
constexpr int kMaxVectorBytes = 64;
template <typename T, int Bytes = 32>
struct Lanes {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int width = Bytes / sizeof(T);
};
template <typename T, int Bytes = 32>
using Vec = typename Lanes<T, Bytes>::type;

// Loads `count` (<= width) elements spaced `stride` apart; missing lanes are 0.
template <int Bytes, typename T>
inline Vec<T, Bytes> load_lanes(const T* p, int64_t stride, int count) {
  Vec<T, Bytes> v{};
  if (stride == 1 && count == Lanes<T, Bytes>::width) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    for (int l = 0; l < count; ++l) v[l] = p[l * stride];
  }
  return v;
}

template <int Bytes, typename T>
inline void store_lanes(T* p, int64_t stride, int count, Vec<T, Bytes> v) {
  if (stride == 1 && count == Lanes<T, Bytes>::width) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    for (int l = 0; l < count; ++l) p[l * stride] = v[l];
  }
}

// floor(u): truncation toward zero (one conversion each way), then one down where that rounded up.
template <int Bytes>
inline Vec<float, Bytes> floor_lanes(Vec<float, Bytes> u) {
  const Vec<float, Bytes> t = __builtin_convertvector(__builtin_convertvector(u, Vec<int32_t, Bytes>), Vec<float, Bytes>);
  return (t > u) ? t - 1.0f : t;
}

}  // namespace cpu

template <>
struct LaneFloor<cpu::Vec<float, 32>> {
  static cpu::Vec<float, 32> apply(cpu::Vec<float, 32> u) { return cpu::floor_lanes<32>(u); }
};
template <>
struct LaneFloor<cpu::Vec<float, 64>> {
  static cpu::Vec<float, 64> apply(cpu::Vec<float, 64> u) { return cpu::floor_lanes<64>(u); }
};

template <>
struct LaneScalar<cpu::Vec<float, 32>> {
  using type = float;
};
template <>
struct LaneScalar<cpu::Vec<double, 32>> {
  using type = double;
};
template <>
struct LaneScalar<cpu::Vec<float, 64>> {
  using type = float;
};
template <>
struct LaneScalar<cpu::Vec<double, 64>> {
  using type = double;
};

}  // namespace kanfast
