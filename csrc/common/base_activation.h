// The base path's activation, applied by ATen on any device: the fused ops write act(x) into
// their feature buffer and need act'(x)·grad in backward. The names are the op argument
// `base_activation`; kanfast/nn maps activation modules onto them.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace kanfast {

inline void check_base_activation(const char* op, const std::string& name) {
  TORCH_CHECK(name == "silu" || name == "gelu" || name == "gelu_tanh" || name == "relu" ||
                  name == "tanh" || name == "sigmoid" || name == "identity",
              op, ": base_activation must be one of silu, gelu, gelu_tanh, relu, tanh, sigmoid, "
              "identity; got '", name, "'");
}

inline at::Tensor base_activation(const std::string& name, const at::Tensor& x) {
  if (name == "silu") return at::silu(x);
  if (name == "gelu" || name == "gelu_tanh") return at::gelu(x, name == "gelu" ? "none" : "tanh");
  if (name == "relu") return at::relu(x);
  if (name == "tanh") return at::tanh(x);
  if (name == "sigmoid") return at::sigmoid(x);
  return x;
}

// out = act(x); out is a strided view into the feature buffer. Computed into a temporary and
// copied: some out= kernels (float32 gelu on the CPU) ignore a non-contiguous out's strides.
inline void base_activation_forward(const std::string& name, const at::Tensor& x, at::Tensor out) {
  out.copy_(base_activation(name, x));
}

// grad · act'(x)
inline at::Tensor base_activation_backward(const std::string& name, const at::Tensor& grad,
                                           const at::Tensor& x) {
  if (name == "silu") return at::silu_backward(grad, x);
  if (name == "gelu" || name == "gelu_tanh") {
    return at::gelu_backward(grad, x, name == "gelu" ? "none" : "tanh");
  }
  if (name == "relu") return at::threshold_backward(grad, x, 0);
  if (name == "tanh") return at::tanh_backward(grad, at::tanh(x));
  if (name == "sigmoid") return at::sigmoid_backward(grad, at::sigmoid(x));
  return grad.clone();
}

}  // namespace kanfast
