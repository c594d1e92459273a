// CUDA registration of kanfast::kan_linear(_backward): the shared implementation with the
// CUDA basis kernels; GEMMs run in the input dtype (cuBLAS accumulates in float32).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../bspline_basis/bspline_basis_cuda.h"
#include "kan_linear_impl.h"

namespace kanfast {

namespace {

at::Tensor value_or_undefined(const std::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

at::Tensor kan_linear_cuda(const at::Tensor& x, const at::Tensor& grid, const std::optional<at::Tensor>& base_weight,
                           const at::Tensor& spline_weight, const std::optional<at::Tensor>& spline_scaler,
                           const std::optional<at::Tensor>& bias, int64_t spline_order,
                           c10::string_view base_activation, int64_t chunk_rows) {
  const std::string act(base_activation);
  check_kan_linear_args("kan_linear", x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, act);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  return kan_linear_forward_impl(bases, x.contiguous(), value_or_undefined(base_weight), spline_weight,
                                 value_or_undefined(spline_scaler), value_or_undefined(bias), act, chunk_rows);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_linear_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
    const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
    const std::optional<at::Tensor>& spline_scaler, int64_t spline_order, c10::string_view base_activation,
    int64_t chunk_rows, std::array<bool, 4> output_mask) {
  const std::string act(base_activation);
  check_kan_linear_backward_args(grad_out, x, grid, base_weight, spline_weight, spline_scaler, spline_order, act);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  return kan_linear_backward_impl(bases, grad_out.contiguous(), x.contiguous(), value_or_undefined(base_weight),
                                  spline_weight, value_or_undefined(spline_scaler), act, chunk_rows, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, CUDA, m) {
  m.impl("kan_linear", &kan_linear_cuda);
  m.impl("kan_linear_backward", &kan_linear_backward_cuda);
}

}  // namespace kanfast
