// Autograd of kanfast::kan_linear for every device, through kanfast::kan_linear_backward.
// In C++ for the same reason as kan_conv_autograd.cpp: the Python formula's per-call frames
// cost more than the kernels at small layers.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "../common/autograd_args.h"

namespace kanfast {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& x, const at::Tensor& grid, const std::optional<at::Tensor>& base_weight,
                        const at::Tensor& spline_weight, const std::optional<at::Tensor>& spline_scaler,
                        const std::optional<at::Tensor>& bias, int64_t spline_order, c10::string_view base_activation,
                        int64_t chunk_rows) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("kanfast::kan_linear", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               const at::Tensor&, const std::optional<at::Tensor>&,
                                               const std::optional<at::Tensor>&, int64_t, c10::string_view,
                                               int64_t)>();
  return op.call(x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, base_activation, chunk_rows);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> call_backward(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
    const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
    const std::optional<at::Tensor>& spline_scaler, int64_t spline_order, c10::string_view base_activation,
    int64_t chunk_rows, std::array<bool, 4> output_mask) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("kanfast::kan_linear_backward", "")
                             .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, const at::Tensor&,
                                 const std::optional<at::Tensor>&, int64_t, c10::string_view, int64_t,
                                 std::array<bool, 4>)>();
  return op.call(grad_out, x, grid, base_weight, spline_weight, spline_scaler, spline_order, base_activation,
                 chunk_rows, output_mask);
}

class KanLinearFunction : public torch::autograd::Function<KanLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& grid,
                            const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
                            const std::optional<at::Tensor>& spline_scaler, const std::optional<at::Tensor>& bias,
                            int64_t spline_order, c10::string_view base_activation, int64_t chunk_rows) {
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    // Only x and the weights are saved: backward recomputes the bases.
    ctx->save_for_backward({x, grid, base_weight.value_or(at::Tensor()), spline_weight,
                            spline_scaler.value_or(at::Tensor())});
    ctx->saved_data["spline_order"] = spline_order;
    ctx->saved_data["base_activation"] = std::string(base_activation);
    ctx->saved_data["chunk_rows"] = chunk_rows;
    ctx->saved_data["given"] =
        std::vector<bool>{true, true, base_weight.has_value(), true, spline_scaler.has_value(), bias.has_value()};
    return call_forward(x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order, base_activation,
                        chunk_rows);
  }

  // One gradient per forward argument; undefined where none is wanted.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    // x, grid, base_weight, spline_weight, spline_scaler, bias
    const auto needs = tensor_args_needing_grad(ctx, ctx->saved_data["given"].toBoolList().vec());
    const std::array<bool, 4> mask{needs[0], needs[2], needs[3], needs[4]};
    variable_list result(9);
    if (mask[0] || mask[1] || mask[2] || mask[3]) {
      auto [grad_x, grad_base, grad_spline, grad_scaler] = call_backward(
          grad, saved[0], saved[1], optional_tensor(saved[2]), saved[3], optional_tensor(saved[4]),
          ctx->saved_data["spline_order"].toInt(), ctx->saved_data["base_activation"].toStringRef(),
          ctx->saved_data["chunk_rows"].toInt(), mask);
      if (mask[0]) result[0] = grad_x;
      if (mask[1]) result[2] = grad_base;
      if (mask[2]) result[3] = grad_spline;
      if (mask[3]) result[4] = grad_scaler;
    }
    if (needs[5]) result[5] = grad.sum(0);
    return result;
  }
};

at::Tensor kan_linear_autograd(const at::Tensor& x, const at::Tensor& grid,
                               const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
                               const std::optional<at::Tensor>& spline_scaler, const std::optional<at::Tensor>& bias,
                               int64_t spline_order, c10::string_view base_activation, int64_t chunk_rows) {
  return KanLinearFunction::apply(x, grid, base_weight, spline_weight, spline_scaler, bias, spline_order,
                                  base_activation, chunk_rows);
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, Autograd, m) { m.impl("kan_linear", &kan_linear_autograd); }

}  // namespace kanfast
