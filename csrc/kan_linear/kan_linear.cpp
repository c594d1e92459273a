// kanfast::kan_linear: the fused KANLinear of DESIGN.md §2 (schema, checks, CPU kernel).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "kan_linear_impl.h"

namespace kanfast {

namespace {

// Half and bfloat16 compute in float32 on the CPU; float and double in their own dtype.
at::Tensor as_compute(const std::optional<at::Tensor>& t, at::ScalarType dtype) {
  return t ? t->to(dtype) : at::Tensor();
}

at::Tensor kan_linear_cpu(const at::Tensor& x, const at::Tensor& grid, const std::optional<at::Tensor>& base_weight,
                          const at::Tensor& spline_weight, const std::optional<at::Tensor>& spline_scaler,
                          const std::optional<at::Tensor>& bias, int64_t spline_order,
                          c10::string_view base_activation, int64_t chunk_rows) {
  const std::string act(base_activation);
  check_kan_linear_args("kan_linear", x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, act);
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  const at::Tensor y = kan_linear_forward_impl(
      bases, x.to(dtype).contiguous(), as_compute(base_weight, dtype), spline_weight.to(dtype),
      as_compute(spline_scaler, dtype), as_compute(bias, dtype), act, chunk_rows);
  return y.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_linear_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
    const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
    const std::optional<at::Tensor>& spline_scaler, int64_t spline_order, c10::string_view base_activation,
    int64_t chunk_rows, std::array<bool, 4> output_mask) {
  const std::string act(base_activation);
  check_kan_linear_backward_args(grad_out, x, grid, base_weight, spline_weight, spline_scaler, spline_order, act);
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  auto [gx, gb, gs, gsc] = kan_linear_backward_impl(
      bases, grad_out.to(dtype).contiguous(), x.to(dtype).contiguous(), as_compute(base_weight, dtype),
      spline_weight.to(dtype), as_compute(spline_scaler, dtype), act, chunk_rows, output_mask);
  const auto back = [&](const at::Tensor& t) { return t.to(x.scalar_type()); };
  return {back(gx), back(gb), back(gs), back(gsc)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def(
      "kan_linear(Tensor x, Tensor grid, Tensor? base_weight, Tensor spline_weight, Tensor? spline_scaler, "
      "Tensor? bias, int spline_order, str base_activation, int chunk_rows) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "kan_linear_backward(Tensor grad_out, Tensor x, Tensor grid, Tensor? base_weight, Tensor spline_weight, "
      "Tensor? spline_scaler, int spline_order, str base_activation, int chunk_rows, bool[4] output_mask) "
      "-> (Tensor, Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) {
  m.impl("kan_linear", &kan_linear_cpu);
  m.impl("kan_linear_backward", &kan_linear_backward_cpu);
}

}  // namespace kanfast
