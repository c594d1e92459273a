#include "bspline_cpu.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kanfast/bspline.h"
#include "kanfast/cpu/lanes.h"
#include "kanfast/cpu/silu_lanes.h"
#include "kanfast/uniform_bspline.h"

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
  T* bases;  // out: forward, and backward when not null
  BasisStrides bases_strides;
  const T* grad_bases;  // backward: in
  BasisStrides grad_strides;
  T* grad_x;  // backward: out
  ElementStrides grad_x_strides;
  bool accumulate;
  SiluSlot<T> silu;
};

// One work item is one lane group: up to W consecutive features of a row (linear inputs,
// positions == 1: lanes read contiguous knots) or up to W consecutive positions of one
// (row, feature) (conv inputs: one knot vector broadcast to all lanes). Items are numbered
// row-major; Cursor walks a range of them without a division per item.
template <typename T, int W, bool kAlongFeatures>
struct Cursor {
  const Extents& e;
  int64_t row, feature, position;

  Cursor(const Extents& extents, int64_t item) : e(extents) {
    if (kAlongFeatures) {
      const int64_t groups = ceil_div(e.features, W);  // lane groups per row
      row = item / groups;
      feature = (item % groups) * W;
      position = 0;
    } else {
      const int64_t groups = ceil_div(e.positions, W);  // lane groups per (row, feature)
      row = item / (e.features * groups);
      const int64_t rest = item % (e.features * groups);
      feature = rest / groups;
      position = (rest % groups) * W;
    }
  }
  int count() const {
    return static_cast<int>(kAlongFeatures ? std::min<int64_t>(W, e.features - feature)
                                           : std::min<int64_t>(W, e.positions - position));
  }
  void next() {
    if (kAlongFeatures) {
      feature += W;
      if (feature >= e.features) feature = 0, ++row;
    } else {
      position += W;
      if (position >= e.positions) {
        position = 0;
        if (++feature == e.features) feature = 0, ++row;
      }
    }
  }
  int64_t at(const ElementStrides& s) const { return row * s.row + feature * s.feature + position * s.position; }
  int64_t at(const BasisStrides& s) const { return row * s.row + feature * s.feature + position * s.position; }
  // stride between lanes in each tensor
  int64_t step(const ElementStrides& s) const { return kAlongFeatures ? s.feature : s.position; }
  int64_t step(const BasisStrides& s) const { return kAlongFeatures ? s.feature : s.position; }
};

inline int64_t num_items(const Extents& e, int W, bool along_features) {
  return along_features ? e.rows * ceil_div(e.features, W) : e.rows * e.features * ceil_div(e.positions, W);
}

// Knot accessors for one lane group: contiguous loads across features, or a broadcast.
template <typename T, int Bytes, bool kAlongFeatures>
struct TableLanes {
  using V = Vec<T, Bytes>;
  const T* base;  // the lane group's first feature in the table
  int64_t interval_stride, padded_features;
  const T* origin;    // uniform tables only: t_0 and 1/h of the lane group's first feature
  const T* inv_step;

  TableLanes(const KnotTables<T>& t, int64_t feature)
      : base(t.table.data() + feature),
        interval_stride(t.interval_stride),
        padded_features(t.padded_features),
        origin(t.uniform ? t.origin.data() + feature : nullptr),
        inv_step(t.uniform ? t.inv_step.data() + feature : nullptr) {}
  static V load(const T* p) {
    if (kAlongFeatures) {
      V v;
      std::memcpy(&v, p, sizeof(v));  // padded_features keeps this in bounds
      return v;
    }
    return V{} + *p;
  }
  V knot(int j) const { return load(base + j * interval_stride); }
  V recip(int k, int j) const { return load(base + j * interval_stride + k * padded_features); }
};

// The uniform kernels where the tables allow them (a branch the item loop predicts), else the
// exact recursion.
template <int K, bool kDerivative, typename T, int Bytes, bool kAlongFeatures, typename Emit>
inline void columns(const TableLanes<T, Bytes, kAlongFeatures>& lanes, int num_knots, Vec<T, Bytes> x,
                    Emit&& emit) {
  if constexpr (std::is_same_v<T, float> && K >= 2) {
    if (lanes.origin) {
      uniform_bspline_columns<K, kDerivative>(x, lanes.load(lanes.origin), lanes.load(lanes.inv_step), num_knots,
                                              std::forward<Emit>(emit));
      return;
    }
  }
  bspline_columns<K, kDerivative>(
      x, num_knots, [&](int j) { return lanes.knot(j); }, [&](int k, int j) { return lanes.recip(k, j); },
      std::forward<Emit>(emit));
}

template <typename T, int Bytes, bool kAlongFeatures>
inline void forward_items(const Args<T>& a, int64_t begin, int64_t end) {
  using V = Vec<T, Bytes>;
  const KnotTables<T>& t = *a.tables;
  Cursor<T, Lanes<T, Bytes>::width, kAlongFeatures> g(a.extents, begin);
  const int64_t x_step = g.step(a.x_strides), out_step = g.step(a.bases_strides);
  const int64_t basis_stride = a.bases_strides.basis;
  const SiluSlot<T>& silu = a.silu;
  const int64_t silu_step = g.step(silu.out_strides);
  dispatch_spline_order(t.order, [&](auto order) {
    for (int64_t item = begin; item < end; ++item, g.next()) {
      const int count = g.count();
      const V x = load_lanes<Bytes>(a.x + g.at(a.x_strides), x_step, count);
      if (silu.out) store_lanes<Bytes>(silu.out + g.at(silu.out_strides), silu_step, count, silu_lanes(x));
      T* out = a.bases + g.at(a.bases_strides);
      columns<decltype(order)::value, false>(
          TableLanes<T, Bytes, kAlongFeatures>(t, g.feature), t.num_knots, x,
          [&](int j, V value, V) { store_lanes<Bytes>(out + j * basis_stride, out_step, count, value); });
    }
  });
}

// grad_x (+)= Σ_j grad_j·dB_j/dx, and with kStoreBases the bases B_j too: backward needs both
// and one recursion serves them.
template <typename T, int Bytes, bool kAlongFeatures, bool kStoreBases>
inline void backward_items(const Args<T>& a, int64_t begin, int64_t end) {
  using V = Vec<T, Bytes>;
  const KnotTables<T>& t = *a.tables;
  Cursor<T, Lanes<T, Bytes>::width, kAlongFeatures> g(a.extents, begin);
  const int64_t x_step = g.step(a.x_strides), grad_step = g.step(a.grad_strides);
  const int64_t grad_x_step = g.step(a.grad_x_strides), out_step = g.step(a.bases_strides);
  const int64_t grad_basis_stride = a.grad_strides.basis, out_basis_stride = a.bases_strides.basis;
  const SiluSlot<T>& silu = a.silu;
  const int64_t silu_step = g.step(silu.out_strides), silu_grad_step = g.step(silu.grad_strides);
  dispatch_spline_order(t.order, [&](auto order) {
    for (int64_t item = begin; item < end; ++item, g.next()) {
      const int count = g.count();
      const V x = load_lanes<Bytes>(a.x + g.at(a.x_strides), x_step, count);
      const T* grad = a.grad_bases + g.at(a.grad_strides);
      T* out = kStoreBases ? a.bases + g.at(a.bases_strides) : nullptr;
      V acc{};
      const bool store_silu = kStoreBases && silu.out;
      if (store_silu || silu.grad) {
        const V denominator = silu_denominator(x);  // one exp for silu(x) and silu'(x)
        if (store_silu) store_lanes<Bytes>(silu.out + g.at(silu.out_strides), silu_step, count, x / denominator);
        if (silu.grad) {
          const V grad_slot = load_lanes<Bytes>(silu.grad + g.at(silu.grad_strides), silu_grad_step, count);
          acc = silu_backward_lanes(grad_slot, x, denominator);
        }
      }
      columns<decltype(order)::value, true>(
          TableLanes<T, Bytes, kAlongFeatures>(t, g.feature), t.num_knots, x, [&](int j, V value, V deriv) {
            if (kStoreBases) store_lanes<Bytes>(out + j * out_basis_stride, out_step, count, value);
            acc += load_lanes<Bytes>(grad + j * grad_basis_stride, grad_step, count) * deriv;
          });
      T* gx = a.grad_x + g.at(a.grad_x_strides);
      if (a.accumulate) acc = load_lanes<Bytes>(gx, grad_x_step, count) + acc;
      store_lanes<Bytes>(gx, grad_x_step, count, acc);
    }
  });
}
template <typename T, int Bytes, bool kAlongFeatures>
inline void grad_items(const Args<T>& a, int64_t begin, int64_t end) {
  backward_items<T, Bytes, kAlongFeatures, false>(a, begin, end);
}
template <typename T, int Bytes, bool kAlongFeatures>
inline void bases_and_grad_items(const Args<T>& a, int64_t begin, int64_t end) {
  backward_items<T, Bytes, kAlongFeatures, true>(a, begin, end);
}

// The entry points the thread pool calls: each is cloned per instruction set.
#define KF_RANGE_FN(name, impl, T, bytes, along) \
  KF_CPU_CLONES void name(const Args<T>& a, int64_t b, int64_t e) { impl<T, bytes, along>(a, b, e); }
#define KF_RANGE_FNS_OF(kind, impl, T, suffix)                                \
  KF_RANGE_FN(kind##_##suffix##_narrow_positions, impl, T, 32, false)        \
  KF_RANGE_FN(kind##_##suffix##_narrow_features, impl, T, 32, true)          \
  KF_RANGE_FN(kind##_##suffix##_wide_positions, impl, T, 64, false)          \
  KF_RANGE_FN(kind##_##suffix##_wide_features, impl, T, 64, true)
#define KF_RANGE_FNS(kind, impl)                \
  KF_RANGE_FNS_OF(kind, impl, float, f32)       \
  KF_RANGE_FNS_OF(kind, impl, double, f64)
KF_RANGE_FNS(forward, forward_items)
KF_RANGE_FNS(backward, grad_items)
KF_RANGE_FNS(bases_and_backward, bases_and_grad_items)
#undef KF_RANGE_FNS
#undef KF_RANGE_FNS_OF
#undef KF_RANGE_FN

template <typename T>
using RangeFn = void (*)(const Args<T>&, int64_t, int64_t);
template <typename T>
using KernelTable = RangeFn<T>[2][2];  // [wide][along_features]

#define KF_KERNEL_TABLE(kind, suffix)                                             \
  {{kind##_##suffix##_narrow_positions, kind##_##suffix##_narrow_features},      \
   {kind##_##suffix##_wide_positions, kind##_##suffix##_wide_features}}
template <typename T>
struct Kernels;
template <>
struct Kernels<float> {
  static constexpr KernelTable<float> forward = KF_KERNEL_TABLE(forward, f32);
  static constexpr KernelTable<float> backward = KF_KERNEL_TABLE(backward, f32);
  static constexpr KernelTable<float> bases_and_backward = KF_KERNEL_TABLE(bases_and_backward, f32);
};
template <>
struct Kernels<double> {
  static constexpr KernelTable<double> forward = KF_KERNEL_TABLE(forward, f64);
  static constexpr KernelTable<double> backward = KF_KERNEL_TABLE(backward, f64);
  static constexpr KernelTable<double> bases_and_backward = KF_KERNEL_TABLE(bases_and_backward, f64);
};
#undef KF_KERNEL_TABLE

// 64-byte lanes unless they leave more lanes empty than 32-byte ones would: 16, 32 or 12
// floats take them, 8 or 24 do not (an empty lane costs as much as a full one).
template <typename T>
bool use_wide_lanes(int64_t lane_extent) {
  constexpr int narrow = Lanes<T, 32>::width, wide = Lanes<T, 64>::width;
  return ceil_div(lane_extent, wide) * 2 == ceil_div(lane_extent, narrow);
}

template <typename T>
void run_items(const Args<T>& a, const KernelTable<T>& kernels) {
  const Extents& extents = a.extents;
  const bool along_features = extents.positions == 1;
  const bool wide = use_wide_lanes<T>(along_features ? extents.features : extents.positions);
  const int width = wide ? Lanes<T, 64>::width : Lanes<T, 32>::width;
  const RangeFn<T> fn = kernels[wide][along_features];
  const int64_t items = num_items(extents, width, along_features);
  // ~4k elements per task: enough to hide scheduling, small enough to balance two cores.
  const int64_t grain = std::max<int64_t>(1, 4096 / width);
  at::parallel_for(0, items, grain, [&](int64_t b, int64_t e) { fn(a, b, e); });
}

}  // namespace

template <typename T>
KnotTables<T>::KnotTables(const T* grid, int64_t features_, int num_knots_, int order_)
    : features(features_),
      padded_features(ceil_div(features_, Lanes<T, kMaxVectorBytes>::width) * Lanes<T, kMaxVectorBytes>::width),
      interval_stride((order_ + 1) * padded_features),
      num_knots(num_knots_),
      order(order_),
      table(size_t(num_knots_) * interval_stride, T(0)) {
  for (int64_t c = 0; c < features; ++c) {
    const T* t = grid + c * num_knots;
    for (int j = 0; j < num_knots; ++j) {
      // The Python wrappers leave these checks to the C++ ops: the knots are read here anyway.
      TORCH_CHECK_VALUE(std::isfinite(t[j]), "grid must hold finite knots, got grid[", c, ", ", j, "] = ", t[j]);
      TORCH_CHECK_VALUE(j == 0 || t[j] >= t[j - 1],
                        "grid must be non-decreasing along dim 1 (one knot vector per feature), but grid[", c,
                        ", ", j, "] = ", t[j], " < grid[", c, ", ", j - 1, "] = ", t[j - 1]);
      table[offset(j, 0) + c] = t[j];
      for (int k = 1; k <= order && j + k < num_knots; ++k) {
        table[offset(j, k) + c] = knot_span_reciprocal(t[j], t[j + k]);
      }
    }
  }
  if (std::is_same_v<T, float> && order >= 2) detect_uniform(grid);
}

// Uniform when every knot lies within 2·epsilon·max(|t_0|, |t_last|) of t_0 + j·h: what a grid
// built in float64 and rounded to float32 (uniform_grid) satisfies, and what keeps the uniform
// kernels' results within their tolerance of the exact recursion on the stored knots.
template <typename T>
void KnotTables<T>::detect_uniform(const T* grid) {
  std::vector<T> origins(padded_features, T(0)), inv_steps(padded_features, T(0));
  for (int64_t c = 0; c < features; ++c) {
    const T* t = grid + c * num_knots;
    const double first = t[0], last = t[num_knots - 1];
    const double step = (last - first) / (num_knots - 1);
    if (!(step > 0)) return;
    const double slack = 2 * std::numeric_limits<T>::epsilon() * std::max(std::fabs(first), std::fabs(last));
    for (int j = 1; j < num_knots - 1; ++j) {
      if (std::fabs(t[j] - (first + j * step)) > slack) return;
    }
    origins[c] = t[0];
    inv_steps[c] = static_cast<T>(1 / step);
  }
  uniform = true;
  origin = std::move(origins);
  inv_step = std::move(inv_steps);
}

template <typename T>
void bspline_bases_cpu(const T* x, ElementStrides x_strides, Extents extents,
                       const KnotTables<T>& tables, T* bases, BasisStrides bases_strides,
                       const SiluSlot<T>& silu) {
  const Args<T> a{x, x_strides, extents, &tables, bases, bases_strides, nullptr, {}, nullptr, {}, false, silu};
  run_items(a, Kernels<T>::forward);
}

template <typename T>
void bspline_bases_backward_cpu(const T* x, ElementStrides x_strides, Extents extents,
                                const KnotTables<T>& tables, T* bases, BasisStrides bases_strides,
                                const T* grad_bases, BasisStrides grad_strides, T* grad_x,
                                ElementStrides grad_x_strides, bool accumulate, const SiluSlot<T>& silu) {
  const Args<T> a{x, x_strides, extents, &tables, bases, bases_strides, grad_bases, grad_strides, grad_x,
                  grad_x_strides, accumulate, silu};
  run_items(a, bases ? Kernels<T>::bases_and_backward : Kernels<T>::backward);
}

#define KF_INSTANTIATE(T)                                                                      \
  template struct KnotTables<T>;                                                               \
  template void bspline_bases_cpu<T>(const T*, ElementStrides, Extents, const KnotTables<T>&, \
                                     T*, BasisStrides, const SiluSlot<T>&);                    \
  template void bspline_bases_backward_cpu<T>(const T*, ElementStrides, Extents,              \
                                              const KnotTables<T>&, T*, BasisStrides, const T*, \
                                              BasisStrides, T*, ElementStrides, bool,           \
                                              const SiluSlot<T>&);
KF_INSTANTIATE(float)
KF_INSTANTIATE(double)
#undef KF_INSTANTIATE

}  // namespace cpu
}  // namespace kanfast
