// The fused KANConvNd (N = 1, 2, 3), written once for any device: `Bases` supplies the basis
// kernels (CpuBases, CudaBases) and ATen the vendor convolution.
//
// Per chunk of images the layer is one convolution over expanded channels, b + nb per input
// channel c (b = 1 with a base path, else 0): act(x[:, c]) and B_j(x[:, c]), j < nb, and
//   y = conv(feats, W_c) + bias,  W_c holding base_weight and spline_weight in the same order.
// feature_layout.h says where each expanded channel sits: channel-major (c·(b+nb) + slot, so a
// group's expanded channels stay contiguous and grouped/depthwise convs work unchanged) or
// slot-major channels-last (faster on the CPU). Bases are computed once per input element
// (never per unfolded patch); zero padding applies to the expanded channels (padded sites
// contribute nothing, as in DESIGN.md §2). Backward recomputes the features per chunk:
// autograd saves only x and the weights.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "../bspline_basis/bspline_bases.h"
#include "../common/chunks.h"
#include "../common/feature_passes.h"
#include "../common/scratch.h"
#include "feature_layout.h"
#include "memory_format_cpu.h"

namespace kanfast {

// Feature buffer per chunk: see kan_linear_impl.h for the reasoning (cache-sized on the CPU,
// large on the GPU where convolutions need many images to fill the device).
constexpr int64_t kConvCpuChunkBytes = 8 << 20;
constexpr int64_t kConvCudaChunkBytes = 256 << 20;

struct KanConvGeometry {
  int64_t dims;                       // 1, 2 or 3
  std::vector<int64_t> stride, dilation;
  std::vector<int64_t> padding;       // symmetric part, passed to the convolution
  std::vector<int64_t> extra_padding; // asymmetric remainder (padding='same' with even extents),
                                      // in constant_pad_nd order: last dim first, (before, after)
  int64_t groups;
  bool asymmetric() const {
    return std::any_of(extra_padding.begin(), extra_padding.end(), [](int64_t p) { return p != 0; });
  }
};

// padding: (before_0, after_0, before_1, after_1, ...) per spatial dim.
inline KanConvGeometry kan_conv_geometry(const char* op, int64_t dims, at::IntArrayRef stride,
                                         at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(dims >= 1 && dims <= 3, op, ": x must have 1 to 3 spatial dims");
  TORCH_CHECK(static_cast<int64_t>(stride.size()) == dims && static_cast<int64_t>(dilation.size()) == dims, op,
              ": stride and dilation need one entry per spatial dim (", dims, "), got ", stride, " and ", dilation);
  TORCH_CHECK(static_cast<int64_t>(padding.size()) == 2 * dims, op,
              ": padding needs (before, after) per spatial dim (", 2 * dims, " entries), got ", padding);
  TORCH_CHECK(groups >= 1, op, ": groups must be positive, got ", groups);
  KanConvGeometry g;
  g.dims = dims;
  g.groups = groups;
  g.stride = stride.vec();
  g.dilation = dilation.vec();
  g.extra_padding.assign(2 * dims, 0);
  for (int64_t d = 0; d < dims; ++d) {
    TORCH_CHECK(stride[d] >= 1 && dilation[d] >= 1, op, ": stride and dilation must be positive");
    const int64_t before = padding[2 * d], after = padding[2 * d + 1];
    TORCH_CHECK(before >= 0 && after >= 0, op, ": padding must be non-negative, got ", padding);
    const int64_t sym = std::min(before, after);
    g.padding.push_back(sym);
    const int64_t rev = dims - 1 - d;  // constant_pad_nd starts from the last dim
    g.extra_padding[2 * rev] = before - sym;
    g.extra_padding[2 * rev + 1] = after - sym;
  }
  return g;
}

inline void check_kan_conv_args(const char* op, const at::Tensor& x, const at::Tensor& grid,
                                const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
                                const std::optional<at::Tensor>& bias, int64_t spline_order,
                                const std::string& base_activation, const KanConvGeometry& g) {
  TORCH_CHECK(x.dim() == g.dims + 2, op, ": x must have shape (N, C, *spatial) with ", g.dims,
              " spatial dims, got ", x.sizes());
  check_bspline_args(op, x, "x", 1, grid, spline_order);
  const int64_t in = x.size(1);
  const int64_t num_bases = grid.size(1) - 1 - spline_order;
  TORCH_CHECK(in % g.groups == 0, op, ": in_channels (", in, ") must be divisible by groups (", g.groups, ")");
  TORCH_CHECK(spline_weight.dim() == g.dims + 3 && spline_weight.size(1) == in / g.groups &&
                  spline_weight.size(2) == num_bases,
              op, ": spline_weight must have shape (out_channels, ", in / g.groups, ", ", num_bases,
              ", *kernel_size) = (out, in/groups, grid_size + spline_order, *kernel_size), got ", spline_weight.sizes());
  const int64_t out = spline_weight.size(0);
  TORCH_CHECK(out % g.groups == 0, op, ": out_channels (", out, ") must be divisible by groups (", g.groups, ")");
  if (base_weight) {
    std::vector<int64_t> expected{out, in / g.groups};
    for (int64_t d = 0; d < g.dims; ++d) expected.push_back(spline_weight.size(3 + d));
    TORCH_CHECK(base_weight->sizes() == at::IntArrayRef(expected), op, ": base_weight must have shape ",
                at::IntArrayRef(expected), " = (out, in/groups, *kernel_size), got ", base_weight->sizes());
  }
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out, op, ": bias must have shape (", out, ",), got ",
                bias->sizes());
  }
  for (const auto& [name, t] : {std::pair{"spline_weight", std::optional<at::Tensor>(spline_weight)},
                                std::pair{"base_weight", base_weight}, std::pair{"bias", bias}}) {
    if (!t) continue;
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(), op, ": ", name,
                " must have x's dtype and device (", x.scalar_type(), ", ", x.device(), "), got ", t->scalar_type(),
                ", ", t->device());
  }
  for (int64_t d = 0; d < g.dims; ++d) {
    const int64_t padded = x.size(2 + d) + 2 * g.padding[d] + g.extra_padding[2 * (g.dims - 1 - d)] +
                           g.extra_padding[2 * (g.dims - 1 - d) + 1];
    TORCH_CHECK(padded >= g.dilation[d] * (spline_weight.size(3 + d) - 1) + 1, op,
                ": the kernel (with dilation) is larger than the padded input along spatial dim ", d);
  }
  check_base_activation(op, base_activation);
}

struct KanConvShape {
  int64_t batch, in, out, num_bases, base_slots, slots, sites, chunk;
  FeatureLayout layout;
  // slots = base_slots + num_bases expanded channels per input channel; sites = prod(spatial)
};

inline KanConvShape kan_conv_shape(const at::Tensor& x, const at::Tensor& spline_weight, bool has_base,
                                   int64_t groups, int64_t chunk_rows) {
  KanConvShape s;
  s.batch = x.size(0);
  s.in = x.size(1);
  s.out = spline_weight.size(0);
  s.num_bases = spline_weight.size(2);
  s.base_slots = has_base ? 1 : 0;
  s.slots = s.base_slots + s.num_bases;
  s.sites = spatial_sites(x);
  s.layout = choose_feature_layout(x, groups);
  if (chunk_rows <= 0) {
    const int64_t bytes = x.is_cuda() ? kConvCudaChunkBytes : kConvCpuChunkBytes;
    chunk_rows = balanced_chunk(s.batch, bytes / std::max<int64_t>(1, s.in * s.slots * s.sites * x.element_size()));
  }
  s.chunk = std::max<int64_t>(1, std::min(chunk_rows, s.batch));
  return s;
}

// The base slot (rows, C, positions) of a slot view (rows, C, slots, positions); undefined
// without a base path.
inline at::Tensor base_slot(const at::Tensor& slots, const KanConvShape& s) {
  return s.base_slots > 0 ? slots.select(2, 0) : at::Tensor();
}

// Writes the expanded channels of x_chunk (n, C, *spatial) into feats (n, C·slots, *spatial).
template <typename Bases>
void kan_conv_features(const Bases& bases, const KanConvShape& s, const std::string& act, const at::Tensor& x_chunk,
                       const at::Tensor& feats) {
  const at::Tensor x3 = element_view(x_chunk, s.layout);
  const at::Tensor f4 = slot_view(feats, s.in, s.slots, s.layout);
  write_features(bases, act, x3, base_slot(f4, s), f4.narrow(2, s.base_slots, s.num_bases));
}

inline at::Tensor pad_features(const at::Tensor& feats, const KanConvGeometry& g) {
  return g.asymmetric() ? at::constant_pad_nd(feats, g.extra_padding, 0) : feats;
}

// The chunk's feature buffer, (rows, C·slots, *spatial) in memory_format(s.layout).
inline at::Tensor feature_buffer(const at::Tensor& x, int64_t rows, const KanConvShape& s) {
  std::vector<int64_t> sizes{rows, s.in * s.slots};
  for (int64_t d = 2; d < x.dim(); ++d) sizes.push_back(x.size(d));
  if (s.layout == FeatureLayout::kChannelMajor) return scratch(ScratchSlot::kFeatures, sizes, x.options());
  std::vector<int64_t> memory{rows};  // (rows, *spatial, C·slots)
  memory.insert(memory.end(), sizes.begin() + 2, sizes.end());
  memory.push_back(s.in * s.slots);
  std::vector<int64_t> order{0, x.dim() - 1};
  for (int64_t d = 1; d < x.dim() - 1; ++d) order.push_back(d);
  return scratch(ScratchSlot::kFeatures, memory, x.options()).permute(order);
}

// x: (N, C, *spatial), any strides -> (N, out, *out_spatial) in input_memory_format(x).
template <typename Bases>
at::Tensor kan_conv_forward_impl(const Bases& bases, const at::Tensor& x_in, const at::Tensor& base_weight,
                                 const at::Tensor& spline_weight, const at::Tensor& bias, const std::string& act,
                                 const KanConvGeometry& g, int64_t chunk_rows) {
  const KanConvShape s = kan_conv_shape(x_in, spline_weight, base_weight.defined(), g.groups, chunk_rows);
  const at::Tensor x = to_memory_format(x_in, memory_format(s.layout, x_in.dim()));
  const at::Tensor weight = combined_weight(base_weight, spline_weight, s.layout);
  const std::vector<int64_t> no_output_padding(g.dims, 0);
  at::Tensor y;
  const at::Tensor buffer = feature_buffer(x, s.chunk, s);
  for (int64_t r0 = 0; r0 < std::max<int64_t>(s.batch, 1); r0 += s.chunk) {
    const int64_t rc = std::min(s.chunk, s.batch - r0);
    const at::Tensor feats = buffer.narrow(0, 0, rc);
    if (rc > 0) kan_conv_features(bases, s, act, x.narrow(0, r0, rc), feats);
    const at::Tensor y_chunk = at::convolution(pad_features(feats, g), weight, bias, g.stride, g.padding, g.dilation,
                                               false, no_output_padding, g.groups);
    if (!y.defined()) {
      auto sizes = y_chunk.sizes().vec();
      sizes[0] = s.batch;
      if (rc == s.batch) return to_memory_format(y_chunk, input_memory_format(x_in));  // a single chunk
      y = at::empty(sizes, y_chunk.options().memory_format(input_memory_format(x_in)));
    }
    copy_across_memory_formats(y.narrow(0, r0, rc), y_chunk);
  }
  return y;
}

// Gradients for (x, base_weight, spline_weight); empty (0,) tensors where not asked for;
// grad_x in input_memory_format(x).
// bias's gradient is grad_out summed over batch and space, left to the caller.
template <typename Bases>
std::tuple<at::Tensor, at::Tensor, at::Tensor> kan_conv_backward_impl(
    const Bases& bases, const at::Tensor& grad_out, const at::Tensor& x_in, const at::Tensor& base_weight,
    const at::Tensor& spline_weight, const std::string& act, const KanConvGeometry& g, int64_t chunk_rows,
    std::array<bool, 3> output_mask) {
  const KanConvShape s = kan_conv_shape(x_in, spline_weight, base_weight.defined(), g.groups, chunk_rows);
  const bool need_x = output_mask[0];
  const bool need_base = output_mask[1] && base_weight.defined();
  const bool need_weights = need_base || output_mask[2];
  const at::MemoryFormat format = memory_format(s.layout, x_in.dim());
  const at::Tensor x = to_memory_format(x_in, format);
  const at::Tensor weight = combined_weight(base_weight, spline_weight, s.layout);
  const std::vector<int64_t> no_output_padding(g.dims, 0);

  at::Tensor grad_x, grad_weight;  // grad_weight: gradient of W_c
  // In the features' layout once, not inside each of the chunk's two convolutions.
  const at::Tensor grad_dense = to_memory_format(grad_out, format);
  if (need_x) grad_x = at::empty_like(x);
  if (s.batch > 0 && (need_x || need_weights)) {
    // Features and their gradient from one pass over the recursion: the input gradient of the
    // convolution comes first (it does not read the features), then the fused basis pass
    // writes the features for the weight gradient while it contracts grad_feats into grad_x.
    const at::Tensor buffer = feature_buffer(x, s.chunk, s);
    for (int64_t r0 = 0; r0 < s.batch; r0 += s.chunk) {
      const int64_t rc = std::min(s.chunk, s.batch - r0);
      const at::Tensor x_chunk = x.narrow(0, r0, rc);
      const at::Tensor g_chunk = grad_dense.narrow(0, r0, rc);
      const at::Tensor feats = buffer.narrow(0, 0, rc);
      const at::Tensor x3 = element_view(x_chunk, s.layout);
      const at::Tensor f4 = slot_view(feats, s.in, s.slots, s.layout);
      if (need_x) {
        at::Tensor grad_padded = std::get<0>(at::convolution_backward(
            g_chunk, pad_features(feats, g), weight, std::nullopt, g.stride, g.padding, g.dilation, false,
            no_output_padding, g.groups, {true, false, false}));
        if (g.asymmetric()) {  // the interior of the padded features
          for (int64_t d = 0; d < g.dims; ++d) {
            grad_padded = grad_padded.narrow(2 + d, g.extra_padding[2 * (g.dims - 1 - d)], x.size(2 + d));
          }
        }
        const at::Tensor grad_feats = slot_view(to_memory_format(grad_padded, format), s.in, s.slots, s.layout);
        const at::Tensor grad_spline = grad_feats.narrow(2, s.base_slots, s.num_bases);
        input_grad_and_features(bases, act, x3, base_slot(grad_feats, s), grad_spline,
                                element_view(grad_x.narrow(0, r0, rc), s.layout),
                                need_weights ? base_slot(f4, s) : at::Tensor(),
                                need_weights ? f4.narrow(2, s.base_slots, s.num_bases) : at::Tensor());
      } else {
        kan_conv_features(bases, s, act, x_chunk, feats);
      }
      if (need_weights) {
        const at::Tensor chunk_grad = std::get<1>(at::convolution_backward(
            g_chunk, pad_features(feats, g), weight, std::nullopt, g.stride, g.padding, g.dilation, false,
            no_output_padding, g.groups, {false, true, false}));
        if (r0 == 0) {
          grad_weight = chunk_grad;
        } else {
          grad_weight.add_(chunk_grad);
        }
      }
    }
  }
  if (need_weights && !grad_weight.defined()) grad_weight = at::zeros_like(weight);  // empty batch

  at::Tensor grad_base, grad_spline;
  if (need_weights) {
    std::tie(grad_base, grad_spline) =
        split_weight_grad(grad_weight, spline_weight, base_weight.defined(), need_base, output_mask[2], s.layout);
  }
  if (grad_x.defined()) grad_x = to_memory_format(grad_x, input_memory_format(x_in));
  const auto or_empty = [&](const at::Tensor& t) { return t.defined() ? t : at::empty({0}, x.options()); };
  return {or_empty(grad_x), or_empty(grad_base), or_empty(grad_spline)};
}

}  // namespace kanfast
