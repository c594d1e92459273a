// CPU kernels shared by every op that evaluates B-spline bases (bspline_basis, kan_linear,
// kan_conv): bases of a strided tensor of elements written in any layout, and the backward
// contraction grad_x = Σ_j grad_bases_j · dB_j/dx. Plain pointers and strides, no tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "kanfast/layout.h"

namespace kanfast {
namespace cpu {

// Knots and reciprocal knot spans per call, one block per knot interval j so that the
// recursion walks a single pointer: table[j][0][c] = t_j and table[j][k][c] = r(k, j) =
// 1/(t_{j+k} - t_j) (0 if empty or past the last knot), k = 1..order. Lanes over consecutive
// features read contiguous memory; the feature count is padded to a whole number of lanes.
template <typename T>
struct KnotTables {
  // grid: (features, num_knots) contiguous and non-decreasing along each row (checked).
  KnotTables(const T* grid, int64_t features, int num_knots, int order);

  // Offset of t_j (m = 0) or r(m, j) (m = 1..order) of feature 0.
  int64_t offset(int j, int m) const { return j * interval_stride + m * padded_features; }

  int64_t features, padded_features, interval_stride;
  int num_knots, order;
  std::vector<T> table;  // [num_knots][order + 1][padded_features]

  // float32 grids with order >= 2 whose every feature is evenly spaced to within rounding take
  // the uniform kernels (kanfast/uniform_bspline.h); float64 always takes the exact recursion.
  bool uniform = false;
  std::vector<T> origin, inv_step;  // [padded_features]: t_0 and 1/h per feature, when uniform

 private:
  void detect_uniform(const T* grid);
};

// A KAN layer's silu base path, evaluated in the same pass as the bases (silu_lanes.h): `out`
// receives silu(x) and `grad`, laid out like x, adds grad·silu'(x) to grad_x. Null: not wanted.
template <typename T>
struct SiluSlot {
  T* out = nullptr;
  ElementStrides out_strides{};
  const T* grad = nullptr;
  ElementStrides grad_strides{};
};

template <typename T>
void bspline_bases_cpu(
    const T* x, ElementStrides x_strides, Extents extents, const KnotTables<T>& tables,
    T* bases, BasisStrides bases_strides, const SiluSlot<T>& silu = {});

// grad_x = Σ_j grad_bases[.., j] · dB_j/dx, added to grad_x's contents when `accumulate`;
// the bases themselves are written to `bases` too unless it is null.
template <typename T>
void bspline_bases_backward_cpu(
    const T* x, ElementStrides x_strides, Extents extents, const KnotTables<T>& tables,
    T* bases, BasisStrides bases_strides, const T* grad_bases, BasisStrides grad_strides, T* grad_x,
    ElementStrides grad_x_strides, bool accumulate, const SiluSlot<T>& silu = {});

}  // namespace cpu
}  // namespace kanfast
