// The fused KANLinear, written once for any device: `Bases` supplies the basis kernels
// (CpuBases, CudaBases) and ATen supplies the GEMMs.
//
// Per chunk of rows the layer is one GEMM over expanded features
//   feats = [act(x) | B_0(x) | ... | B_{nb-1}(x)]        (rows, F), F = (1 + nb)·in
//   y     = feats @ W_cᵀ + bias,  W_c = [base_weight | (spline_weight·scaler) basis-major]
// The basis-major order (all features' B_0, then all B_1, ...) lets the CPU kernels store
// 8 or 16 features per instruction. Nothing of size (N, F) outlives a chunk: backward recomputes
// the features, so autograd saves only x and the weights. Backward holds two chunk buffers
// (features and their gradient).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "../common/chunk_shares.h"
#include "../common/chunks.h"
#include "../common/feature_passes.h"
#include "../common/scratch.h"
#include "../bspline_basis/bspline_bases.h"
#include "combined_weight_cpu.h"

namespace kanfast {

// Default chunk. CPU: the basis passes are bound by memory traffic once the feature buffer
// leaves the cache, while the GEMMs run at full speed from a few hundred rows on, so chunks
// are counted in rows (measured with bench/kan_linear_ratios.py); very wide layers get fewer,
// so that the buffer stays one a thread keeps for reuse (common/scratch.h). When each thread
// runs its own share of the chunks (common/chunk_shares.h), 256-row chunks: 128 to 1024 were
// within noise of each other at 64->64, 256 best at 256->256.
// GPU: GEMMs need many rows to fill the device; 64 MiB is still small next to its memory.
constexpr int64_t kCpuChunkRows = 1024;
constexpr int64_t kCpuPerThreadRows = 256;
constexpr int64_t kCpuMaxChunkBytes = kMaxRetainedScratchBytes;
constexpr int64_t kCudaChunkBytes = 64 << 20;

inline void check_kan_linear_args(const char* op, const at::Tensor& x, const at::Tensor& grid,
                           const std::optional<at::Tensor>& base_weight, const at::Tensor& spline_weight,
                           const std::optional<at::Tensor>& spline_scaler, const std::optional<at::Tensor>& bias,
                           int64_t spline_order, const std::string& base_activation) {
  TORCH_CHECK(x.dim() == 2, op, ": x must have shape (batch, in_features), got ", x.sizes());
  check_bspline_args(op, x, "x", 1, grid, spline_order);
  const int64_t in = x.size(1);
  const int64_t num_bases = grid.size(1) - 1 - spline_order;
  TORCH_CHECK(spline_weight.dim() == 3 && spline_weight.size(1) == in && spline_weight.size(2) == num_bases, op,
              ": spline_weight must have shape (out_features, ", in, ", ", num_bases,
              ") = (out, in_features, grid_size + spline_order), got ", spline_weight.sizes());
  const int64_t out = spline_weight.size(0);
  for (const auto& [name, t] : {std::pair{"base_weight", base_weight}, std::pair{"spline_scaler", spline_scaler}}) {
    if (!t) continue;
    TORCH_CHECK(t->dim() == 2 && t->size(0) == out && t->size(1) == in, op, ": ", name, " must have shape (",
                out, ", ", in, ") = (out_features, in_features), got ", t->sizes());
  }
  for (const auto& [name, t] : {std::pair{"spline_weight", std::optional<at::Tensor>(spline_weight)},
                                std::pair{"base_weight", base_weight}, std::pair{"spline_scaler", spline_scaler}}) {
    if (!t) continue;
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ", x.scalar_type(),
                ", got ", t->scalar_type());
    TORCH_CHECK(t->device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
                t->device());
  }
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out, op, ": bias must have shape (out_features,) = (", out,
                ",), got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(), op,
                ": bias must have x's dtype and device");
  }
  check_base_activation(op, base_activation);
}

inline void check_kan_linear_backward_args(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& grid,
                                           const std::optional<at::Tensor>& base_weight,
                                           const at::Tensor& spline_weight,
                                           const std::optional<at::Tensor>& spline_scaler, int64_t spline_order,
                                           const std::string& base_activation) {
  check_kan_linear_args("kan_linear_backward", x, grid, base_weight, spline_weight, spline_scaler, std::nullopt,
                        spline_order, base_activation);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == x.size(0) && grad_out.size(1) == spline_weight.size(0),
              "kan_linear_backward: grad_out must have shape (", x.size(0), ", ", spline_weight.size(0), "), got ",
              grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type() && grad_out.device() == x.device(),
              "kan_linear_backward: grad_out must have x's dtype and device");
}



struct KanLinearShape {
  int64_t rows, in, out, num_bases, base_cols, features, chunk_rows;
  int shares;  // of the chunks, run one per thread (common/chunk_shares.h), or 1
};

inline KanLinearShape kan_linear_shape(const at::Tensor& x, const at::Tensor& spline_weight, bool has_base,
                                       int64_t chunk_rows) {
  KanLinearShape s;
  s.rows = x.size(0);
  s.in = x.size(1);
  s.out = spline_weight.size(0);
  s.num_bases = spline_weight.size(2);
  s.base_cols = has_base ? s.in : 0;
  s.features = s.base_cols + s.num_bases * s.in;
  const int64_t row_bytes = std::max<int64_t>(1, s.features * x.element_size());
  s.shares = chunk_shares(x, s.out * row_bytes);
  if (chunk_rows <= 0) {
    int64_t max_rows = x.is_cuda() ? std::max<int64_t>(64, kCudaChunkBytes / row_bytes)
                                   : std::min(s.shares > 1 ? kCpuPerThreadRows : kCpuChunkRows,
                                              kCpuMaxChunkBytes / row_bytes);
    if (s.shares > 1) max_rows = std::min(max_rows, (s.rows + s.shares - 1) / s.shares);  // work for every thread
    chunk_rows = balanced_chunk(s.rows, max_rows);
  }
  s.chunk_rows = std::max<int64_t>(1, std::min(chunk_rows, s.rows));
  return s;
}

// W_c: (out, F); the spline block is permuted to the basis-major feature order. Written in
// place (no cat, no temporary for the scaled spline weight): this runs on every call. On the
// CPU by plain loops (combined_weight_cpu.h).
inline at::Tensor kan_linear_combined_weight(const at::Tensor& base_weight, const at::Tensor& spline_weight,
                                             const at::Tensor& spline_scaler) {
  const int64_t out = spline_weight.size(0), in = spline_weight.size(1), num_bases = spline_weight.size(2);
  const int64_t base_cols = base_weight.defined() ? in : 0;
  at::Tensor weight = at::empty({out, base_cols + num_bases * in}, spline_weight.options());
  if (weight.is_cpu()) {
    kan_linear_combined_weight_cpu(base_weight, spline_weight, spline_scaler, weight);
    return weight;
  }
  if (base_cols > 0) weight.narrow(1, 0, in).copy_(base_weight);
  at::Tensor spline = weight.narrow(1, base_cols, num_bases * in).view({out, num_bases, in});
  const at::Tensor per_basis = spline_weight.permute({0, 2, 1});
  if (spline_scaler.defined()) {
    at::mul_out(spline, per_basis, spline_scaler.unsqueeze(1));
  } else {
    spline.copy_(per_basis);
  }
  return weight;
}

// The spline block of a (rows, F) feature buffer as the (rows, in, nb, 1) view the bases take.
inline at::Tensor spline_block(const at::Tensor& feats, const KanLinearShape& s) {
  return feats.narrow(1, s.base_cols, s.num_bases * s.in)
      .view({feats.size(0), s.num_bases, s.in})
      .permute({0, 2, 1})
      .unsqueeze(-1);
}

// The base block of a (rows, F) feature buffer as the (rows, in, 1) view x3 has.
inline at::Tensor base_block(const at::Tensor& feats, const KanLinearShape& s) {
  return s.base_cols > 0 ? feats.narrow(1, 0, s.in).unsqueeze(-1) : at::Tensor();
}

// Writes the features of x_chunk (rows, in) into feats (rows, F).
template <typename Bases>
void kan_linear_features(const Bases& bases, const KanLinearShape& s, const std::string& act,
                         const at::Tensor& x_chunk, const at::Tensor& feats) {
  write_features(bases, act, x_chunk.unsqueeze(-1), base_block(feats, s), spline_block(feats, s));
}

// x: (N, in); grid: (in, G+2K+1); base_weight: (out, in) or undefined; spline_weight:
// (out, in, G+K); spline_scaler: (out, in) or undefined; bias: (out) or undefined -> (N, out)
template <typename Bases>
at::Tensor kan_linear_forward_impl(const Bases& bases, const at::Tensor& x, const at::Tensor& base_weight,
                                   const at::Tensor& spline_weight, const at::Tensor& spline_scaler,
                                   const at::Tensor& bias, const std::string& act, int64_t chunk_rows) {
  const KanLinearShape s = kan_linear_shape(x, spline_weight, base_weight.defined(), chunk_rows);
  at::Tensor y = at::empty({s.rows, s.out}, x.options());
  if (s.rows == 0) return y;
  const at::Tensor weight_t = kan_linear_combined_weight(base_weight, spline_weight, spline_scaler).t();
  for_each_chunk(s.rows, s.chunk_rows, s.shares, [&](int64_t, int64_t r0, int64_t rc) {
    // scratch is per thread: each share has its own buffer
    const at::Tensor feats = scratch(ScratchSlot::kFeatures, {s.chunk_rows, s.features}, x.options()).narrow(0, 0, rc);
    kan_linear_features(bases, s, act, x.narrow(0, r0, rc), feats);
    at::Tensor y_chunk = y.narrow(0, r0, rc);
    if (bias.defined()) {
      at::addmm_out(y_chunk, bias, feats, weight_t);
    } else {
      at::mm_out(y_chunk, feats, weight_t);
    }
  });
  return y;
}

// Gradients for (x, base_weight, spline_weight, spline_scaler); entries not asked for in
// output_mask (or whose parameter is undefined) come back as empty tensors of shape (0,).
// bias's gradient is grad_out.sum(0), left to the caller.
template <typename Bases>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kan_linear_backward_impl(
    const Bases& bases, const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& base_weight,
    const at::Tensor& spline_weight, const at::Tensor& spline_scaler, const std::string& act,
    int64_t chunk_rows, std::array<bool, 4> output_mask) {
  const KanLinearShape s = kan_linear_shape(x, spline_weight, base_weight.defined(), chunk_rows);
  const bool need_x = output_mask[0];
  const bool need_base = output_mask[1] && base_weight.defined();
  const bool need_scaler = output_mask[3] && spline_scaler.defined();
  const bool need_weights = need_base || output_mask[2] || need_scaler;

  // One partial gradient of W_c per share, (shares, out, F), summed in share order at the end:
  // the same result for the same thread count whichever thread runs which share. (out, F)
  // with a single share.
  const int64_t shares = s.rows > 0 ? shares_used(s.rows, s.chunk_rows, s.shares) : 1;
  at::Tensor grad_x, grad_weight;
  if (need_x) grad_x = at::empty({s.rows, s.in}, x.options());
  if (need_weights) {
    grad_weight = s.rows == 0 ? at::zeros({s.out, s.features}, x.options())
                  : shares > 1 ? at::empty({shares, s.out, s.features}, x.options())
                               : at::empty({s.out, s.features}, x.options());
  }
  if (s.rows > 0 && (need_x || need_weights)) {
    const at::Tensor weight =
        need_x ? kan_linear_combined_weight(base_weight, spline_weight, spline_scaler) : at::Tensor();
    std::vector<char> started(shares, 0);
    for_each_chunk(s.rows, s.chunk_rows, s.shares, [&](int64_t share, int64_t r0, int64_t rc) {
      const at::Tensor x_chunk = x.narrow(0, r0, rc);
      const at::Tensor g_chunk = grad_out.narrow(0, r0, rc);
      // grad_feats comes first (it needs no bases) so that one pass over the recursion then
      // yields both the features for grad_weight and grad_x.
      const at::Tensor feats = need_weights
          ? scratch(ScratchSlot::kFeatures, {s.chunk_rows, s.features}, x.options()).narrow(0, 0, rc)
          : at::Tensor();
      if (need_x) {
        at::Tensor grad_feats =
            scratch(ScratchSlot::kFeatureGrad, {s.chunk_rows, s.features}, x.options()).narrow(0, 0, rc);
        at::mm_out(grad_feats, g_chunk, weight);
        input_grad_and_features(bases, act, x_chunk.unsqueeze(-1), base_block(grad_feats, s),
                                spline_block(grad_feats, s), grad_x.narrow(0, r0, rc).unsqueeze(-1),
                                need_weights ? base_block(feats, s) : at::Tensor(),
                                need_weights ? spline_block(feats, s) : at::Tensor());
      } else {
        kan_linear_features(bases, s, act, x_chunk, feats);
      }
      if (need_weights) {
        at::Tensor acc = shares > 1 ? grad_weight[share] : grad_weight;
        if (!started[share]) {
          at::mm_out(acc, g_chunk.t(), feats);
          started[share] = 1;
        } else {
          acc.addmm_(g_chunk.t(), feats);
        }
      }
    });
  }

  at::Tensor grad_base, grad_spline, grad_scaler;
  if (need_base) grad_base = at::empty({s.out, s.in}, x.options());
  if (output_mask[2]) grad_spline = at::empty(spline_weight.sizes(), spline_weight.options());
  if (need_scaler) grad_scaler = at::empty({s.out, s.in}, x.options());
  if (need_weights && x.is_cpu()) {
    kan_linear_split_weight_grad_cpu(grad_weight, spline_weight, spline_scaler, base_weight.defined(), grad_base,
                                     grad_spline, grad_scaler);
  } else if (need_weights) {  // a single share off the CPU (chunk_shares.h)
    if (need_base) grad_base.copy_(grad_weight.narrow(1, 0, s.in));
    // d loss / d (spline_weight·scaler), (out, G+K, in) as W_c holds it
    const at::Tensor grad_scaled =
        grad_weight.narrow(1, s.base_cols, s.num_bases * s.in).view({s.out, s.num_bases, s.in});
    if (output_mask[2]) {  // written straight into the (out, in, G+K) layout: one pass, no copy
      at::Tensor as_scaled = grad_spline.permute({0, 2, 1});
      if (spline_scaler.defined()) {
        at::mul_out(as_scaled, grad_scaled, spline_scaler.unsqueeze(1));
      } else {
        as_scaled.copy_(grad_scaled);
      }
    }
    // reduced over the bases in W_c's layout, where (out, in) rows are contiguous
    if (need_scaler) at::sum_out(grad_scaler, grad_scaled * spline_weight.permute({0, 2, 1}), 1);
  }
  const auto or_empty = [&](const at::Tensor& t) { return t.defined() ? t : at::empty({0}, x.options()); };
  return {or_empty(grad_x), or_empty(grad_base), or_empty(grad_spline), or_empty(grad_scaler)};
}

}  // namespace kanfast
