// CudaBases: the CUDA counterpart of CpuBases (bspline_bases.h), same methods.
#pragma once

#include <ATen/core/Tensor.h>

namespace kanfast {

class CudaBases {
 public:
  static constexpr bool kFusesSilu = false;  // the base path stays an ATen op (see CpuBases)

  // grid: (features, num_knots) on the device; tables are built there in `compute` dtype
  // (float64 for double inputs, float32 otherwise).
  CudaBases(const at::Tensor& grid, int64_t spline_order, at::ScalarType compute);

  // x: (rows, features, positions); out: (rows, features, num_bases, positions), any strides.
  void forward(const at::Tensor& x, const at::Tensor& out) const;
  void backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& grad_x, bool accumulate) const;
  // Two launches here (one per kernel); the CPU fuses them into one pass.
  void bases_and_backward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& grad,
                          const at::Tensor& grad_x, bool accumulate) const {
    forward(x, out);
    backward(x, grad, grad_x, accumulate);
  }

  int64_t num_bases() const { return num_knots_ - 1 - order_; }

 private:
  at::Tensor knots_;   // (num_knots, features)
  at::Tensor recips_;  // (order + 1, num_knots - 1, features)
  int num_knots_, order_;
};

inline at::ScalarType cuda_compute_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace kanfast
