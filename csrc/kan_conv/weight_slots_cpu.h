// The copy between kan_conv's combined weight W_c and (base_weight, spline_weight), either way,
// as one plain loop on the CPU (feature_layout.h has the layouts and the ATen version).
//
// Why not ATen: W_c is built in forward and again in backward, and its gradient split back,
// on every call; with small images these permuted copies were a tenth of the layer's time
// (four to six ATen copies of ~16 µs each at N=16 16->32 8x8, torch.profiler).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace kanfast {

// weight: W_c (out, in·slots, *k), any strides, whose channel c·input_step + s·slot_step holds
// slot s of input channel c; base (out, in, *k) and spline (out, in, nb, *k): contiguous, or
// undefined to skip them. into_weight: W_c <- base, spline; else the reverse.
inline void copy_weight_slots_cpu(const at::Tensor& weight, const at::Tensor& base, const at::Tensor& spline,
                                  bool has_base, int64_t num_bases, int64_t input_step, int64_t slot_step,
                                  bool into_weight) {
  const int64_t base_slots = has_base ? 1 : 0, slots = base_slots + num_bases;
  const int64_t out = weight.size(0), in = weight.size(1) / slots;
  // W_c offsets of the kernel taps, in the row-major tap order of base and spline
  std::vector<int64_t> taps{0};
  for (int64_t d = 2; d < weight.dim(); ++d) {
    std::vector<int64_t> next;
    for (const int64_t offset : taps) {
      for (int64_t i = 0; i < weight.size(d); ++i) next.push_back(offset + i * weight.stride(d));
    }
    taps = std::move(next);
  }
  const int64_t num_taps = static_cast<int64_t>(taps.size());
  const int64_t grain = std::max<int64_t>(1, (16 << 10) / std::max<int64_t>(1, in * slots * num_taps));
  // The inner loop runs along W_c's unit stride: over input channels in slot-major
  // channels-last W_c, over the taps in channel-major W_c.
  const bool along_channels = input_step * weight.stride(1) == 1;
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "kan_conv_weight_slots", [&] {
    scalar_t* w = weight.mutable_data_ptr<scalar_t>();
    scalar_t* b = base.defined() ? base.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* sp = spline.defined() ? spline.mutable_data_ptr<scalar_t>() : nullptr;
    // count elements, W_c's at w_step apart, base's or spline's at other_step
    const auto copy = [&](scalar_t* w_at, int64_t w_step, scalar_t* other, int64_t other_step, int64_t count) {
      for (int64_t i = 0; i < count; ++i) {
        if (into_weight) {
          w_at[i * w_step] = other[i * other_step];
        } else {
          other[i * other_step] = w_at[i * w_step];
        }
      }
    };
    at::parallel_for(0, out, grain, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        for (int64_t s = 0; s < slots; ++s) {
          const bool is_base = s < base_slots;
          scalar_t* first = is_base ? b : sp;  // (o, c = 0, slot s, tap 0) in base or spline
          if (!first) continue;
          first += is_base ? o * in * num_taps : (o * in * num_bases + s - base_slots) * num_taps;
          const int64_t channel_step = (is_base ? 1 : num_bases) * num_taps;
          scalar_t* w_slot = w + o * weight.stride(0) + s * slot_step * weight.stride(1);
          if (along_channels) {
            for (int64_t k = 0; k < num_taps; ++k) copy(w_slot + taps[k], 1, first + k, channel_step, in);
          } else {
            for (int64_t c = 0; c < in; ++c) {
              scalar_t* w_channel = w_slot + c * input_step * weight.stride(1);
              scalar_t* other = first + c * channel_step;
              for (int64_t k = 0; k < num_taps; ++k) copy(w_channel + taps[k], 1, other + k, 1, 1);
            }
          }
        }
      }
    });
  });
}

}  // namespace kanfast
