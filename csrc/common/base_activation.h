// The base path's activation, applied by ATen on any device: the fused ops write act(x) into
// their feature buffer and need act'(x)·grad in backward. The names are the op argument
// `base_activation`; kanfast/nn maps activation modules onto them. (On the CPU the basis
// kernels evaluate silu themselves: common/feature_passes.h.)
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
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

// Length of t's contiguous runs: the size of its unit-stride dim (1 if it has none).
inline int64_t contiguous_run(const at::Tensor& t) {
  int64_t run = 1;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) == 1) run = std::max(run, t.size(d));
  }
  return run;
}

// ATen's element-wise kernels run one inner loop per contiguous run of a strided operand:
// below this length a dense temporary is faster (measured on silu and silu_backward).
constexpr int64_t kShortRun = 32;

// out = act(x); out is a strided view into the feature buffer. Other than silu, computed into
// a temporary and copied: some out= kernels ignore a non-contiguous out's strides (float32
// gelu on the CPU, torch 2.13: wrong values); silu's writes them correctly.
inline void base_activation_forward(const std::string& name, const at::Tensor& x, at::Tensor out) {
  if (name == "silu" && contiguous_run(out) >= kShortRun) {
    at::silu_out(out, x);
  } else {
    out.copy_(base_activation(name, x));
  }
}

// out = grad_slot · act'(x); out is dense in x's layout, grad_slot a slot of the
// feature-gradient buffer. A conv's slot-major slots have runs of only C elements: there a
// dense copy of the slot first is faster (silu_backward at C = 16, 8x8 images: 57 -> 13 us);
// from kShortRun on, the strided input is (KANLinear 256 features: 106 -> 71 us).
inline void base_activation_backward(const std::string& name, const at::Tensor& grad_slot, const at::Tensor& x,
                                     at::Tensor out) {
  if (name == "identity") {
    out.copy_(grad_slot);
    return;
  }
  // empty_like keeps x's dense strides
  const at::Tensor grad =
      contiguous_run(grad_slot) < kShortRun ? at::empty_like(x).copy_(grad_slot) : grad_slot;
  if (name == "silu") {
    at::silu_backward_out(out, grad, x);
  } else if (name == "gelu" || name == "gelu_tanh") {
    at::gelu_backward_out(out, grad, x, name == "gelu" ? "none" : "tanh");
  } else if (name == "relu") {
    at::threshold_backward_out(out, grad, x, 0);
  } else if (name == "tanh") {
    at::tanh_backward_out(out, grad, at::tanh(x));
  } else {
    at::sigmoid_backward_out(out, grad, at::sigmoid(x));
  }
}

}  // namespace kanfast
