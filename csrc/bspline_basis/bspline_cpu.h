// CPU kernels shared by every op that evaluates B-spline bases (bspline_basis, kan_linear,
// kan_conv): bases of a strided tensor of elements written in any layout, and the backward
// contraction grad_x = Σ_j grad_bases_j · dB_j/dx. Plain pointers and strides, no tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "kanfast/layout.h"

namespace kanfast {
namespace cpu {

// Knots and reciprocal knot spans per call, laid out so that lanes over consecutive features
// read contiguous memory: knot[j][c] and recip[k][j][c] = 1/(t_{j+k} - t_j) (0 if empty).
// Feature count is padded to a whole number of lanes.
template <typename T>
struct KnotTables {
  // grid: (features, num_knots) contiguous and non-decreasing along each row (checked).
  KnotTables(const T* grid, int64_t features, int num_knots, int order);

  int64_t features, padded_features;
  int num_knots, order;
  std::vector<T> knot;   // [num_knots][padded_features]
  std::vector<T> recip;  // [order + 1][num_knots - 1][padded_features]
};

template <typename T>
void bspline_bases_cpu(
    const T* x, ElementStrides x_strides, Extents extents, const KnotTables<T>& tables,
    T* bases, BasisStrides bases_strides);

// grad_x = Σ_j grad_bases[.., j] · dB_j/dx, added to grad_x's contents when `accumulate`.
template <typename T>
void bspline_bases_backward_cpu(
    const T* x, ElementStrides x_strides, Extents extents, const KnotTables<T>& tables,
    const T* grad_bases, BasisStrides grad_strides, T* grad_x, ElementStrides grad_x_strides,
    bool accumulate);

}  // namespace cpu
}  // namespace kanfast
