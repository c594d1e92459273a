// The per-chunk passes over x that kan_linear and kan_conv share, on element views
// (rows, features, positions): the base slot act(x) and the spline slots B_j(x) of the
// features, and in backward grad_x from the features' gradient. With a basis class that fuses
// silu (CpuBases::kFusesSilu) a silu base path is evaluated in the basis kernels' pass;
// otherwise by ATen (base_activation.h).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "base_activation.h"

namespace kanfast {

// base_slot (undefined: no base path) = act(x); spline_slots (rows, features, nb, positions) = B(x).
template <typename Bases>
void write_features(const Bases& bases, const std::string& act, const at::Tensor& x, const at::Tensor& base_slot,
                    const at::Tensor& spline_slots) {
  if constexpr (Bases::kFusesSilu) {
    if (base_slot.defined() && act == "silu") {
      bases.forward(x, spline_slots, base_slot);
      return;
    }
  }
  if (base_slot.defined()) base_activation_forward(act, x, base_slot);
  bases.forward(x, spline_slots);
}

// gx = d loss / d x from grad_base (undefined: no base path) and grad_spline, the gradient of
// the base and spline slots; when spline_slots is defined, the features are written again
// too (into base_slot and spline_slots), from the same pass.
template <typename Bases>
void input_grad_and_features(const Bases& bases, const std::string& act, const at::Tensor& x,
                             const at::Tensor& grad_base, const at::Tensor& grad_spline, const at::Tensor& gx,
                             const at::Tensor& base_slot, const at::Tensor& spline_slots) {
  const bool has_base = grad_base.defined();
  if constexpr (Bases::kFusesSilu) {
    if (has_base && act == "silu") {
      if (spline_slots.defined()) {
        bases.bases_and_backward(x, spline_slots, grad_spline, gx, false, base_slot, grad_base);
      } else {
        bases.backward(x, grad_spline, gx, false, grad_base);
      }
      return;
    }
  }
  if (has_base) base_activation_backward(act, grad_base, x, gx);
  if (spline_slots.defined()) {
    if (has_base) base_activation_forward(act, x, base_slot);
    bases.bases_and_backward(x, spline_slots, grad_spline, gx, has_base);
  } else {
    bases.backward(x, grad_spline, gx, has_base);
  }
}

}  // namespace kanfast
