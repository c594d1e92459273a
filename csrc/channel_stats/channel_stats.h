// Argument checks and tensor plumbing of kanfast::channel_stats shared by the CPU kernel and
// the CUDA glue: both see the activation as a contiguous (outer, channels, inner) tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <tuple>
#include <vector>

namespace kanfast {

using ChannelStatsResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                      at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// Per-channel outputs, in schema order. Counts are int64, the rest float64.
struct ChannelStatsOutputs {
  at::Tensor count, sum, abs_sum, m2, zeros, nonpos, min, max;
  at::Tensor hist;                    // (channels, bins)
  at::Tensor prod_sum, prod_abs_sum;  // Σ x·grad, Σ |x·grad|: (channels,), or (0,) without grad

  // The statistics of no elements: zeros, min = +inf, max = -inf (the identities of a merge).
  ChannelStatsOutputs(int64_t channels, int64_t bins, bool with_grad, const at::Device& device);
  ChannelStatsResult as_tuple() const;
};

// Checks every argument (errors name it); returns dim wrapped into [0, x.dim()).
int64_t check_channel_stats_args(const at::Tensor& x, int64_t dim, const c10::optional<at::Tensor>& grad,
                                 int64_t bins, double lo, double hi);

// The dims of x ordered by decreasing stride: the order its elements lie in memory.
std::vector<int64_t> memory_order(const at::Tensor& x);

// t permuted by `order` and made contiguous (a copy only if t is not dense in that order),
// viewed as (outer, channels, inner) around dim. inner == 1 means channels are innermost.
at::Tensor channel_view(const at::Tensor& t, int64_t dim, const std::vector<int64_t>& order);

}  // namespace kanfast
