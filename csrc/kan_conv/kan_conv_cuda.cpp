// CUDA registration of kanfast::kan_conv(_backward): the shared implementation with the CUDA
// basis kernels and cuDNN convolutions in the input dtype.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../bspline_basis/bspline_basis_cuda.h"
#include "kan_conv_impl.h"

namespace kanfast {

namespace {

at::Tensor value_or_undefined(const std::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

at::Tensor kan_conv_cuda(const at::Tensor& x, const at::Tensor& grid, const std::optional<at::Tensor>& base_weight,
                         const at::Tensor& spline_weight, const std::optional<at::Tensor>& bias, int64_t spline_order,
                         c10::string_view base_activation, at::IntArrayRef stride, at::IntArrayRef padding,
                         at::IntArrayRef dilation, int64_t groups, int64_t chunk_rows) {
  const std::string act(base_activation);
  const KanConvGeometry g = kan_conv_geometry("kan_conv", x.dim() - 2, stride, padding, dilation, groups);
  check_kan_conv_args("kan_conv", x, grid, base_weight, spline_weight, bias, spline_order, act, g);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  return kan_conv_forward_impl(bases, x, value_or_undefined(base_weight), spline_weight, value_or_undefined(bias), act,
                               g, chunk_rows);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
    const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight, int64_t spline_order,
    c10::string_view base_activation, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t chunk_rows, std::array<bool, 3> output_mask) {
  const std::string act(base_activation);
  const KanConvGeometry g = kan_conv_geometry("kan_conv_backward", x.dim() - 2, stride, padding, dilation, groups);
  check_kan_conv_args("kan_conv_backward", x, grid, base_weight, spline_weight, std::nullopt, spline_order, act, g);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  return kan_conv_backward_impl(bases, grad_out, x, value_or_undefined(base_weight),
                                spline_weight, act, g, chunk_rows, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, CUDA, m) {
  m.impl("kan_conv", &kan_conv_cuda);
  m.impl("kan_conv_backward", &kan_conv_backward_cuda);
}

}  // namespace kanfast
