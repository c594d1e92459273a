#include "bspline_cpu.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

#include "kanfast/bspline.h"
#include "kanfast/cpu/lanes.h"

namespace kanfast {
namespace cpu {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename T>
struct Args {
  const T* x;
  ElementStrides x_strides;
  Extents extents;
  const KnotTables<T>* tables;
  // forward: bases out; backward: grad_bases in, grad_x out
  T* bases;
  const T* grad_bases;
  BasisStrides bases_strides;
  T* grad_x;
  ElementStrides grad_x_strides;
  bool accumulate;
};

// One work item is one lane group: up to `width` consecutive features of a row (linear
// inputs, positions == 1: lanes read contiguous knots) or up to `width` consecutive
// positions of one (row, feature) (conv inputs: one knot vector broadcast to all lanes).
struct LaneGroup {
  int64_t row, feature, position;
  int count;
  int64_t x_step, bases_step, grad_x_step;  // stride between lanes in each tensor
};

template <typename T, bool kAlongFeatures>
inline int64_t num_items(const Extents& e) {
  constexpr int W = Lanes<T>::width;
  return kAlongFeatures ? e.rows * ceil_div(e.features, W)
                        : e.rows * e.features * ceil_div(e.positions, W);
}

template <typename T, bool kAlongFeatures>
inline LaneGroup lane_group(const Args<T>& a, int64_t item) {
  constexpr int W = Lanes<T>::width;
  const Extents& e = a.extents;
  LaneGroup g;
  if (kAlongFeatures) {
    const int64_t groups = ceil_div(e.features, W);
    g.row = item / groups;
    g.feature = (item % groups) * W;
    g.position = 0;
    g.count = static_cast<int>(std::min<int64_t>(W, e.features - g.feature));
    g.x_step = a.x_strides.feature;
    g.bases_step = a.bases_strides.feature;
    g.grad_x_step = a.grad_x_strides.feature;
  } else {
    const int64_t groups = ceil_div(e.positions, W);
    g.row = item / (e.features * groups);
    const int64_t rest = item % (e.features * groups);
    g.feature = rest / groups;
    g.position = (rest % groups) * W;
    g.count = static_cast<int>(std::min<int64_t>(W, e.positions - g.position));
    g.x_step = a.x_strides.position;
    g.bases_step = a.bases_strides.position;
    g.grad_x_step = a.grad_x_strides.position;
  }
  return g;
}

template <typename T>
inline int64_t element_offset(const ElementStrides& s, const LaneGroup& g) {
  return g.row * s.row + g.feature * s.feature + g.position * s.position;
}

template <typename T>
inline int64_t bases_offset(const BasisStrides& s, const LaneGroup& g) {
  return g.row * s.row + g.feature * s.feature + g.position * s.position;
}

// Knot accessors for one lane group: contiguous loads across features, or a broadcast.
template <typename T, bool kAlongFeatures>
struct TableLanes {
  const KnotTables<T>& t;
  int64_t feature;
  Vec<T> load(const T* p) const {
    if (kAlongFeatures) {
      Vec<T> v;
      std::memcpy(&v, p, sizeof(v));  // padded_features keeps this in bounds
      return v;
    }
    return Vec<T>{} + *p;
  }
  Vec<T> operator()(int j) const { return load(t.knot.data() + j * t.padded_features + feature); }
};
template <typename T, bool kAlongFeatures>
struct RecipLanes {
  const KnotTables<T>& t;
  int64_t feature;
  Vec<T> operator()(int k, int j) const {
    const T* p = t.recip.data() + (int64_t(k) * (t.num_knots - 1) + j) * t.padded_features + feature;
    return TableLanes<T, kAlongFeatures>{t, feature}.load(p);
  }
};

template <typename T, bool kAlongFeatures>
inline void forward_items(const Args<T>& a, int64_t begin, int64_t end) {
  const KnotTables<T>& t = *a.tables;
  dispatch_spline_order(t.order, [&](auto order) {
    for (int64_t item = begin; item < end; ++item) {
      const LaneGroup g = lane_group<T, kAlongFeatures>(a, item);
      const Vec<T> x = load_lanes(a.x + element_offset<T>(a.x_strides, g), g.x_step, g.count);
      T* out = a.bases + bases_offset<T>(a.bases_strides, g);
      bspline_columns<decltype(order)::value, false>(
          x, t.num_knots, TableLanes<T, kAlongFeatures>{t, g.feature}, RecipLanes<T, kAlongFeatures>{t, g.feature},
          [&](int j, Vec<T> value, Vec<T>) { store_lanes(out + j * a.bases_strides.basis, g.bases_step, g.count, value); });
    }
  });
}

template <typename T, bool kAlongFeatures>
inline void backward_items(const Args<T>& a, int64_t begin, int64_t end) {
  const KnotTables<T>& t = *a.tables;
  dispatch_spline_order(t.order, [&](auto order) {
    for (int64_t item = begin; item < end; ++item) {
      const LaneGroup g = lane_group<T, kAlongFeatures>(a, item);
      const Vec<T> x = load_lanes(a.x + element_offset<T>(a.x_strides, g), g.x_step, g.count);
      const T* grad = a.grad_bases + bases_offset<T>(a.bases_strides, g);
      Vec<T> acc{};
      bspline_columns<decltype(order)::value, true>(
          x, t.num_knots, TableLanes<T, kAlongFeatures>{t, g.feature}, RecipLanes<T, kAlongFeatures>{t, g.feature},
          [&](int j, Vec<T>, Vec<T> deriv) {
            acc += load_lanes(grad + j * a.bases_strides.basis, g.bases_step, g.count) * deriv;
          });
      T* gx = a.grad_x + element_offset<T>(a.grad_x_strides, g);
      if (a.accumulate) acc = load_lanes(gx, g.grad_x_step, g.count) + acc;
      store_lanes(gx, g.grad_x_step, g.count, acc);
    }
  });
}

// The entry points the thread pool calls: each is cloned per instruction set.
#define KF_RANGE_FN(name, impl, T, along) \
  KF_CPU_CLONES void name(const Args<T>& a, int64_t b, int64_t e) { impl<T, along>(a, b, e); }
KF_RANGE_FN(forward_f32_features, forward_items, float, true)
KF_RANGE_FN(forward_f32_positions, forward_items, float, false)
KF_RANGE_FN(forward_f64_features, forward_items, double, true)
KF_RANGE_FN(forward_f64_positions, forward_items, double, false)
KF_RANGE_FN(backward_f32_features, backward_items, float, true)
KF_RANGE_FN(backward_f32_positions, backward_items, float, false)
KF_RANGE_FN(backward_f64_features, backward_items, double, true)
KF_RANGE_FN(backward_f64_positions, backward_items, double, false)
#undef KF_RANGE_FN

template <typename T>
using RangeFn = void (*)(const Args<T>&, int64_t, int64_t);

template <typename T>
struct Kernels;
template <>
struct Kernels<float> {
  static constexpr RangeFn<float> forward[2] = {forward_f32_positions, forward_f32_features};
  static constexpr RangeFn<float> backward[2] = {backward_f32_positions, backward_f32_features};
};
template <>
struct Kernels<double> {
  static constexpr RangeFn<double> forward[2] = {forward_f64_positions, forward_f64_features};
  static constexpr RangeFn<double> backward[2] = {backward_f64_positions, backward_f64_features};
};

template <typename T>
void run_items(const Args<T>& a, RangeFn<T> fn, bool along_features) {
  const int64_t items = along_features ? num_items<T, true>(a.extents) : num_items<T, false>(a.extents);
  // ~4k elements per task: enough to hide scheduling, small enough to balance two cores.
  const int64_t grain = std::max<int64_t>(1, 4096 / Lanes<T>::width);
  at::parallel_for(0, items, grain, [&](int64_t b, int64_t e) { fn(a, b, e); });
}

}  // namespace

template <typename T>
KnotTables<T>::KnotTables(const T* grid, int64_t features_, int num_knots_, int order_)
    : features(features_),
      padded_features(ceil_div(features_, Lanes<T>::width) * Lanes<T>::width),
      num_knots(num_knots_),
      order(order_),
      knot(size_t(num_knots_) * padded_features, T(0)),
      recip(size_t(order_ + 1) * (num_knots_ - 1) * padded_features, T(0)) {
  for (int64_t c = 0; c < features; ++c) {
    const T* t = grid + c * num_knots;
    for (int j = 0; j < num_knots; ++j) {
      TORCH_CHECK(std::isfinite(t[j]), "grid: knots must be finite, got grid[", c, ", ", j,
                  "] = ", t[j]);
      TORCH_CHECK(j == 0 || t[j] >= t[j - 1], "grid: knots must be non-decreasing along dim 1, but grid[",
                  c, ", ", j, "] = ", t[j], " < grid[", c, ", ", j - 1, "] = ", t[j - 1]);
      knot[j * padded_features + c] = t[j];
    }
    for (int k = 1; k <= order; ++k) {
      for (int j = 0; j + k < num_knots; ++j) {
        recip[(int64_t(k) * (num_knots - 1) + j) * padded_features + c] =
            knot_span_reciprocal(t[j], t[j + k]);
      }
    }
  }
}

template <typename T>
void bspline_bases_cpu(const T* x, ElementStrides x_strides, Extents extents,
                       const KnotTables<T>& tables, T* bases, BasisStrides bases_strides) {
  Args<T> a{x, x_strides, extents, &tables, bases, nullptr, bases_strides, nullptr, {0, 0, 0}, false};
  const bool along_features = extents.positions == 1;
  run_items(a, Kernels<T>::forward[along_features], along_features);
}

template <typename T>
void bspline_bases_backward_cpu(const T* x, ElementStrides x_strides, Extents extents,
                                const KnotTables<T>& tables, const T* grad_bases,
                                BasisStrides grad_strides, T* grad_x, ElementStrides grad_x_strides,
                                bool accumulate) {
  Args<T> a{x, x_strides, extents, &tables, nullptr, grad_bases, grad_strides, grad_x, grad_x_strides, accumulate};
  const bool along_features = extents.positions == 1;
  run_items(a, Kernels<T>::backward[along_features], along_features);
}

#define KF_INSTANTIATE(T)                                                                      \
  template struct KnotTables<T>;                                                               \
  template void bspline_bases_cpu<T>(const T*, ElementStrides, Extents, const KnotTables<T>&, \
                                     T*, BasisStrides);                                        \
  template void bspline_bases_backward_cpu<T>(const T*, ElementStrides, Extents,              \
                                              const KnotTables<T>&, const T*, BasisStrides, T*, \
                                              ElementStrides, bool);
KF_INSTANTIATE(float)
KF_INSTANTIATE(double)
#undef KF_INSTANTIATE

}  // namespace cpu
}  // namespace kanfast
