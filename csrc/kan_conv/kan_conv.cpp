// kanfast::kan_conv: the fused KANConv1d/2d/3d of DESIGN.md §2 (schema, checks, CPU kernel).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "kan_conv_impl.h"

namespace kanfast {

namespace {

at::Tensor as_compute(const std::optional<at::Tensor>& t, at::ScalarType dtype) {
  return t ? t->to(dtype) : at::Tensor();
}

at::Tensor kan_conv_cpu(const at::Tensor& x, const at::Tensor& grid, const std::optional<at::Tensor>& base_weight,
                        const at::Tensor& spline_weight, const std::optional<at::Tensor>& bias, int64_t spline_order,
                        c10::string_view base_activation, at::IntArrayRef stride, at::IntArrayRef padding,
                        at::IntArrayRef dilation, int64_t groups, int64_t chunk_rows) {
  const std::string act(base_activation);
  const KanConvGeometry g = kan_conv_geometry("kan_conv", x.dim() - 2, stride, padding, dilation, groups);
  check_kan_conv_args("kan_conv", x, grid, base_weight, spline_weight, bias, spline_order, act, g);
  // Half and bfloat16 compute in float32 on the CPU.
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  // x in any layout: the implementation converts it to the features' layout once.
  const at::Tensor y = kan_conv_forward_impl(bases, x.to(dtype), as_compute(base_weight, dtype),
                                             spline_weight.to(dtype), as_compute(bias, dtype), act, g, chunk_rows);
  return y.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
    const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight, int64_t spline_order,
    c10::string_view base_activation, at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
    int64_t groups, int64_t chunk_rows, std::array<bool, 3> output_mask) {
  const std::string act(base_activation);
  const KanConvGeometry g = kan_conv_geometry("kan_conv_backward", x.dim() - 2, stride, padding, dilation, groups);
  check_kan_conv_args("kan_conv_backward", x, grid, base_weight, spline_weight, std::nullopt, spline_order, act, g);
  TORCH_CHECK(grad_out.dim() == x.dim() && grad_out.size(0) == x.size(0) && grad_out.size(1) == spline_weight.size(0),
              "kan_conv_backward: grad_out must have shape (", x.size(0), ", ", spline_weight.size(0),
              ", *out_spatial), got ", grad_out.sizes());
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  auto [gx, gb, gs] = kan_conv_backward_impl(bases, grad_out.to(dtype), x.to(dtype),
                                             as_compute(base_weight, dtype), spline_weight.to(dtype), act, g,
                                             chunk_rows, output_mask);
  const auto back = [&](const at::Tensor& t) { return t.to(x.scalar_type()); };
  return {back(gx), back(gb), back(gs)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def(
      "kan_conv(Tensor x, Tensor grid, Tensor? base_weight, Tensor spline_weight, Tensor? bias, int spline_order, "
      "str base_activation, int[] stride, int[] padding, int[] dilation, int groups, int chunk_rows) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "kan_conv_backward(Tensor grad_out, Tensor x, Tensor grid, Tensor? base_weight, Tensor spline_weight, "
      "int spline_order, str base_activation, int[] stride, int[] padding, int[] dilation, int groups, "
      "int chunk_rows, bool[3] output_mask) -> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) {
  m.impl("kan_conv", &kan_conv_cpu);
  m.impl("kan_conv_backward", &kan_conv_backward_cpu);
}

}  // namespace kanfast
