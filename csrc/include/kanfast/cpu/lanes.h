// SIMD lanes for the CPU kernels, as GCC/Clang vector extensions: the same source compiles to
// AVX2+FMA in the x86-64-v3 clone of each kernel and to SSE2 in the baseline clone, picked
// at load time (KF_CPU_CLONES), so one binary runs on every x86-64 CPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "kanfast/bspline.h"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
// flatten: the hot loops' callees must be inlined into each clone to get its instruction set.
#define KF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), flatten))
#else
#define KF_CPU_CLONES __attribute__((flatten))
#endif

namespace kanfast {
namespace cpu {

// 32 bytes: 8 floats or 4 doubles.
template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int width = 32 / sizeof(T);
};
template <typename T>
using Vec = typename Lanes<T>::type;

// Loads `count` (<= width) elements spaced `stride` apart; missing lanes are 0.
template <typename T>
inline Vec<T> load_lanes(const T* p, int64_t stride, int count) {
  Vec<T> v{};
  if (stride == 1 && count == Lanes<T>::width) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    for (int l = 0; l < count; ++l) v[l] = p[l * stride];
  }
  return v;
}

template <typename T>
inline void store_lanes(T* p, int64_t stride, int count, Vec<T> v) {
  if (stride == 1 && count == Lanes<T>::width) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    for (int l = 0; l < count; ++l) p[l * stride] = v[l];
  }
}

}  // namespace cpu

template <>
struct LaneScalar<cpu::Vec<float>> {
  using type = float;
};
template <>
struct LaneScalar<cpu::Vec<double>> {
  using type = double;
};

}  // namespace kanfast
