// Helpers for the ops' C++ autograd kernels (torch::autograd::Function).
#pragma once

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <optional>
#include <vector>

namespace kanfast {

// Per tensor argument of the forward (in order): whether it needs a gradient. `given` says
// which were present: needs_input_grad numbers only those, as an absent optional tensor has
// no graph edge.
inline std::vector<bool> tensor_args_needing_grad(torch::autograd::AutogradContext* ctx,
                                                  const std::vector<bool>& given) {
  std::vector<bool> needs;
  size_t edge = 0;
  for (const bool present : given) needs.push_back(present && ctx->needs_input_grad(edge++));
  return needs;
}

// A saved optional tensor (saved as undefined when absent) back as the op's optional argument.
inline std::optional<at::Tensor> optional_tensor(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

}  // namespace kanfast
