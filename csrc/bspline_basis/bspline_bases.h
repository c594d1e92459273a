// Tensor-level basis evaluation used by every op, and the argument checks they share.
//
// The fused ops (kan_linear, kan_conv) are written once against the two methods of a
// "bases" object — CpuBases here, CudaBases in bspline_basis_cuda.h — so the CPU and CUDA
// builds share their orchestration (chunking, GEMMs) and differ only in these kernels.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <memory>

#include "bspline_cpu.h"
#include "kanfast/bspline.h"
#include "kanfast/layout.h"

namespace kanfast {

// x: (*, features) or (N, features, *positions) per `feature_dim`; grid: (features, num_knots).
inline void check_bspline_args(const char* op, const at::Tensor& x, const char* x_name,
                               int64_t feature_dim, const at::Tensor& grid, int64_t spline_order) {
  TORCH_CHECK(x.is_floating_point(), op, ": ", x_name, " must be a floating-point tensor, got ",
              x.scalar_type());
  TORCH_CHECK(grid.is_floating_point(), op, ": grid must be a floating-point tensor, got ",
              grid.scalar_type());
  TORCH_CHECK(x.device() == grid.device(), op, ": ", x_name, " and grid must be on the same device, got ",
              x.device(), " and ", grid.device());
  TORCH_CHECK(spline_order >= 1 && spline_order <= kMaxSplineOrder, op,
              ": spline_order must be in [1, ", kMaxSplineOrder, "], got ", spline_order);
  TORCH_CHECK(grid.dim() == 2, op, ": grid must have shape (features, grid_size + 2*spline_order + 1), got ",
              grid.sizes());
  TORCH_CHECK(grid.size(1) >= spline_order + 2 && grid.size(1) <= kMaxKnots, op,
              ": grid.size(1) (knots per feature) must be in [spline_order + 2, ", kMaxKnots,
              "] = [", spline_order + 2, ", ", kMaxKnots, "], got ", grid.size(1));
  TORCH_CHECK(x.dim() > feature_dim && x.size(feature_dim) == grid.size(0), op, ": ", x_name,
              ".size(", feature_dim, ") must equal grid.size(0) = ", grid.size(0),
              " (one knot vector per feature), got ", x_name, " of shape ", x.sizes());
}

inline ElementStrides element_strides(const at::Tensor& t) {  // t: (rows, features, positions)
  return {t.stride(0), t.stride(1), t.stride(2)};
}
inline BasisStrides basis_strides(const at::Tensor& t) {  // t: (rows, features, bases, positions)
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}
inline Extents extents(const at::Tensor& x) { return {x.size(0), x.size(1), x.size(2)}; }

// The dtype the CPU kernels compute in: float32 for half/bfloat16 inputs.
inline at::ScalarType cpu_compute_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

class CpuBases {
 public:
  // The kernels can evaluate a silu base path in their pass over x (the optional silu
  // arguments below); CudaBases cannot, and the fused ops ask this before passing them.
  static constexpr bool kFusesSilu = true;

  // grid: (features, num_knots), converted to `dtype` (float or double).
  CpuBases(const at::Tensor& grid, int64_t spline_order, at::ScalarType dtype);

  // x: (rows, features, positions); out: (rows, features, num_bases, positions), any strides;
  // silu_out, when defined: like x, receives silu(x).
  void forward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& silu_out = {}) const;
  // grad_x (+)= Σ_j grad[.., j, ..]·dB_j/dx; grad: like `out` above, grad_x: like x; with
  // silu_grad (like x) defined, grad_x = silu_grad·silu'(x) + that sum.
  void backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& grad_x, bool accumulate,
                const at::Tensor& silu_grad = {}) const;
  // Both at once: the fused ops' backward needs the bases again (for the weight gradient)
  // and grad_x, and one pass over the recursion gives both (and silu(x) into silu_out).
  void bases_and_backward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& grad,
                          const at::Tensor& grad_x, bool accumulate, const at::Tensor& silu_out = {},
                          const at::Tensor& silu_grad = {}) const;

  int64_t num_bases() const { return num_bases_; }

 private:
  std::unique_ptr<cpu::KnotTables<float>> f32_;
  std::unique_ptr<cpu::KnotTables<double>> f64_;
  int64_t num_bases_;
};

}  // namespace kanfast
