// How kan_conv lays out its expanded channels in memory (see kan_conv_impl.h for what they are).
//
// kChannelMajor: channel c·slots + s, (N, C·slots, *spatial) contiguous. Works for any device,
//   group count and rank.
// kSlotMajor:    channel s·C + c, channels-last memory (N, *spatial, slots, C). oneDNN's
//   channels-last convolutions are faster than its NCHW ones at these channel counts, and with
//   the input channel innermost the basis kernels run along features with unit-stride loads
//   and stores. Used on the CPU for 2-D/3-D convs with groups == 1 (a group's expanded
//   channels must stay contiguous, which slot-major order breaks for groups > 1).
//   Measured fwd+bwd ÷ NCHW floor, channel-major → slot-major: 16×16 images 1.08 → 0.78,
//   the 32×32 headline 0.87 → 0.77, 8×8 unchanged (1.59 / 1.62; bench/kan_conv_ratios.py).
#pragma once

#include <ATen/ATen.h>

#include <utility>
#include <vector>

#include "weight_slots_cpu.h"

namespace kanfast {

enum class FeatureLayout { kChannelMajor, kSlotMajor };

inline FeatureLayout choose_feature_layout(const at::Tensor& x, int64_t groups) {
  const bool slot_major = x.is_cpu() && (x.dim() == 4 || x.dim() == 5) && groups == 1;
  return slot_major ? FeatureLayout::kSlotMajor : FeatureLayout::kChannelMajor;
}

// The layout the op returns y and grad_x in: channels-last for a channels-last x (one that is
// not also contiguous), else contiguous — the rule of the Python wrapper and fake kernels.
inline at::MemoryFormat input_memory_format(const at::Tensor& x) {
  if (x.dim() != 4 && x.dim() != 5) return at::MemoryFormat::Contiguous;
  const auto channels_last = x.dim() == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
  return !x.is_contiguous() && x.is_contiguous(channels_last) ? channels_last : at::MemoryFormat::Contiguous;
}

inline at::MemoryFormat memory_format(FeatureLayout layout, int64_t dim) {
  if (layout == FeatureLayout::kChannelMajor) return at::MemoryFormat::Contiguous;
  return dim == 4 ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::ChannelsLast3d;
}

inline int64_t spatial_sites(const at::Tensor& t) {  // t: (N, C, *spatial)
  int64_t sites = 1;
  for (int64_t d = 2; d < t.dim(); ++d) sites *= t.size(d);
  return sites;
}

// (N, C, *spatial) -> the same tensor with the channel dim moved last: (N, *spatial, C).
inline at::Tensor channels_innermost(const at::Tensor& t) {
  std::vector<int64_t> order{0};
  for (int64_t d = 2; d < t.dim(); ++d) order.push_back(d);
  order.push_back(1);
  return t.permute(order);
}

// x (n, C, *spatial), in memory_format(layout) -> (rows, C, positions) for the basis kernels:
// (n, C, sites) or, slot-major, (n·sites, C, 1).
inline at::Tensor element_view(const at::Tensor& x, FeatureLayout layout) {
  const int64_t n = x.size(0), in = x.size(1), sites = spatial_sites(x);
  if (layout == FeatureLayout::kChannelMajor) return x.view({n, in, sites});
  return channels_innermost(x).view({n * sites, in, 1});
}

// features (n, C·slots, *spatial), in memory_format(layout) -> (rows, C, slots, positions),
// rows and positions as in element_view.
inline at::Tensor slot_view(const at::Tensor& feats, int64_t in, int64_t slots, FeatureLayout layout) {
  const int64_t n = feats.size(0), sites = spatial_sites(feats);
  if (layout == FeatureLayout::kChannelMajor) return feats.view({n, in, slots, sites});
  return channels_innermost(feats).view({n * sites, slots, in}).transpose(1, 2).unsqueeze(3);
}

// Where the slot index sits in a per-slot view of W_c: (out, in/groups, slots, *k) when
// channel-major, (out, slots, in/groups, *k) when slot-major.
inline int64_t weight_slot_dim(FeatureLayout layout) { return layout == FeatureLayout::kChannelMajor ? 2 : 1; }

inline std::vector<int64_t> per_slot_weight_sizes(const at::Tensor& spline_weight, int64_t slots,
                                                  FeatureLayout layout) {
  std::vector<int64_t> sizes = spline_weight.sizes().vec();  // (out, in/groups, num_bases, *k)
  sizes[2] = slots;
  if (weight_slot_dim(layout) == 1) std::swap(sizes[1], sizes[2]);
  return sizes;
}

// spline_weight or its gradient (out, in/groups, num_bases, *k) as laid out in W_c's slots.
inline at::Tensor spline_in_slot_order(const at::Tensor& t, FeatureLayout layout) {
  return weight_slot_dim(layout) == 2 ? t : t.transpose(1, 2);
}

// Where slot s of input channel c sits among W_c's channels: c·first + s·second.
inline std::pair<int64_t, int64_t> channel_steps(FeatureLayout layout, int64_t in_per_group, int64_t slots) {
  return layout == FeatureLayout::kChannelMajor ? std::pair<int64_t, int64_t>{slots, 1}
                                                : std::pair<int64_t, int64_t>{1, in_per_group};
}

// W_c: (out, in/groups·slots, *k) in memory_format(layout), from base_weight (out, in/groups,
// *k; undefined: no base slot) and spline_weight (out, in/groups, num_bases, *k). On the CPU
// by one plain loop (weight_slots_cpu.h), as is the split below.
inline at::Tensor combined_weight(const at::Tensor& base_weight, const at::Tensor& spline_weight,
                                  FeatureLayout layout) {
  const int64_t base_slots = base_weight.defined() ? 1 : 0, num_bases = spline_weight.size(2);
  std::vector<int64_t> sizes = spline_weight.sizes().vec();
  sizes.erase(sizes.begin() + 2);
  sizes[1] *= base_slots + num_bases;
  const at::Tensor w = at::empty(sizes, spline_weight.options().memory_format(memory_format(layout, sizes.size())));
  if (w.is_cpu()) {
    const auto [input_step, slot_step] = channel_steps(layout, spline_weight.size(1), base_slots + num_bases);
    copy_weight_slots_cpu(w, base_slots ? base_weight.contiguous() : at::Tensor(), spline_weight.contiguous(),
                          base_slots, num_bases, input_step, slot_step, true);
    return w;
  }
  const at::Tensor w_slots = w.view(per_slot_weight_sizes(spline_weight, base_slots + num_bases, layout));
  const int64_t slot_dim = weight_slot_dim(layout);
  if (base_slots) w_slots.select(slot_dim, 0).copy_(base_weight);
  w_slots.narrow(slot_dim, base_slots, num_bases).copy_(spline_in_slot_order(spline_weight, layout));
  return w;
}

// The gradient of W_c split back into (grad_base_weight, grad_spline_weight), each contiguous
// and undefined where not wanted. Cloned, not made contiguous: at degenerate shapes a slot of
// the gradient is contiguous already, and the op's outputs must not alias each other.
inline std::pair<at::Tensor, at::Tensor> split_weight_grad(const at::Tensor& grad_weight,
                                                           const at::Tensor& spline_weight, bool has_base,
                                                           bool want_base, bool want_spline, FeatureLayout layout) {
  const int64_t base_slots = has_base ? 1 : 0, num_bases = spline_weight.size(2);
  if (grad_weight.is_cpu()) {
    at::Tensor grad_base, grad_spline;
    if (has_base && want_base) {
      std::vector<int64_t> sizes = spline_weight.sizes().vec();
      sizes.erase(sizes.begin() + 2);
      grad_base = at::empty(sizes, grad_weight.options());
    }
    if (want_spline) grad_spline = at::empty(spline_weight.sizes(), grad_weight.options());
    const auto [input_step, slot_step] = channel_steps(layout, spline_weight.size(1), base_slots + num_bases);
    copy_weight_slots_cpu(grad_weight, grad_base, grad_spline, has_base, num_bases, input_step, slot_step, false);
    return {grad_base, grad_spline};
  }
  const at::Tensor g = grad_weight.reshape(per_slot_weight_sizes(spline_weight, base_slots + num_bases, layout));
  const int64_t slot_dim = weight_slot_dim(layout);
  at::Tensor grad_base, grad_spline;
  if (has_base && want_base) grad_base = g.select(slot_dim, 0).clone(at::MemoryFormat::Contiguous);
  if (want_spline) {
    grad_spline = spline_in_slot_order(g.narrow(slot_dim, base_slots, num_bases), layout)
                      .clone(at::MemoryFormat::Contiguous);
  }
  return {grad_base, grad_spline};
}

}  // namespace kanfast
