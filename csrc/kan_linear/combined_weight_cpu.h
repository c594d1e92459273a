// KANLinear's combined weight W_c, and the weight gradients split back out of its gradient,
// as plain loops on the CPU (kan_linear_impl.h has the layout and the ATen version).
//
// Why not ATen: both are permuted element-wise passes over a weight-sized tensor, run serially
// around the chunk loop on every call. ATen's strided kernels took ~25 µs per pass at 64->64
// (a third of the layer's fixed cost per call, measured with the op at N = 1); these loops
// walk each output row in L1 and split the rows over the threads.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace kanfast {

// Rows of `out` per task: about 16k elements of work each.
inline int64_t weight_row_grain(int64_t features) { return std::max<int64_t>(1, (16 << 10) / features); }

template <typename T>
const T* const_data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}
template <typename T>
T* mutable_data_or_null(const at::Tensor& t) {
  return t.defined() ? t.mutable_data_ptr<T>() : nullptr;
}

// weight (out, F) = [base_weight | spline_weight·scaler, basis-major]; weight contiguous.
inline void kan_linear_combined_weight_cpu(const at::Tensor& base_weight, const at::Tensor& spline_weight,
                                           const at::Tensor& spline_scaler, const at::Tensor& weight) {
  const int64_t out = spline_weight.size(0), in = spline_weight.size(1), num_bases = spline_weight.size(2);
  const int64_t base_cols = base_weight.defined() ? in : 0, features = weight.size(1);
  const at::Tensor base_c = base_weight.defined() ? base_weight.contiguous() : at::Tensor();
  const at::Tensor spline_c = spline_weight.contiguous();
  const at::Tensor scaler_c = spline_scaler.defined() ? spline_scaler.contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "kan_linear_combined_weight", [&] {
    const scalar_t* base = const_data_or_null<scalar_t>(base_c);
    const scalar_t* spline = spline_c.const_data_ptr<scalar_t>();
    const scalar_t* scaler = const_data_or_null<scalar_t>(scaler_c);
    scalar_t* w = weight.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, out, weight_row_grain(features), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        scalar_t* row = w + o * features;
        if (base) std::copy_n(base + o * in, in, row);
        for (int64_t c = 0; c < in; ++c) {
          const scalar_t* bases = spline + (o * in + c) * num_bases;
          const scalar_t scale = scaler ? scaler[o * in + c] : scalar_t(1);
          for (int64_t j = 0; j < num_bases; ++j) row[base_cols + j * in + c] = bases[j] * scale;
        }
      }
    });
  });
}

// From the gradient of W_c, summed over `partials` (shares, out, F) in share order, or given
// whole as `partials` (out, F): grad_base (out, in), grad_spline (out, in, nb) and grad_scaler
// (out, in), each written where defined (contiguous).
inline void kan_linear_split_weight_grad_cpu(const at::Tensor& partials, const at::Tensor& spline_weight,
                                             const at::Tensor& spline_scaler, bool has_base,
                                             const at::Tensor& grad_base, const at::Tensor& grad_spline,
                                             const at::Tensor& grad_scaler) {
  const int64_t out = spline_weight.size(0), in = spline_weight.size(1), num_bases = spline_weight.size(2);
  const int64_t base_cols = has_base ? in : 0, features = base_cols + num_bases * in;
  const int64_t shares = partials.dim() == 3 ? partials.size(0) : 1;
  const at::Tensor spline_c = spline_weight.contiguous();
  const at::Tensor scaler_c = spline_scaler.defined() ? spline_scaler.contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(partials.scalar_type(), "kan_linear_split_weight_grad", [&] {
    const scalar_t* parts = partials.const_data_ptr<scalar_t>();  // contiguous: the op's own buffer
    const scalar_t* spline = spline_c.const_data_ptr<scalar_t>();
    const scalar_t* scaler = const_data_or_null<scalar_t>(scaler_c);
    scalar_t* g_base = mutable_data_or_null<scalar_t>(grad_base);
    scalar_t* g_spline = mutable_data_or_null<scalar_t>(grad_spline);
    scalar_t* g_scaler = mutable_data_or_null<scalar_t>(grad_scaler);
    at::parallel_for(0, out, weight_row_grain(features), [&](int64_t o0, int64_t o1) {
      std::vector<scalar_t> summed(shares > 1 ? features : 0);
      for (int64_t o = o0; o < o1; ++o) {
        const scalar_t* row = parts + o * features;
        if (shares > 1) {
          std::copy_n(row, features, summed.data());
          for (int64_t s = 1; s < shares; ++s) {
            const scalar_t* part = row + s * out * features;
            for (int64_t f = 0; f < features; ++f) summed[f] += part[f];
          }
          row = summed.data();
        }
        if (g_base) std::copy_n(row, in, g_base + o * in);
        for (int64_t c = 0; c < in; ++c) {
          const int64_t oc = o * in + c;
          const scalar_t scale = scaler ? scaler[oc] : scalar_t(1);
          scalar_t scaler_sum = 0;
          for (int64_t j = 0; j < num_bases; ++j) {
            const scalar_t grad_scaled = row[base_cols + j * in + c];  // d loss / d (spline·scaler)
            if (g_spline) g_spline[oc * num_bases + j] = grad_scaled * scale;
            scaler_sum += grad_scaled * spline[oc * num_bases + j];
          }
          if (g_scaler) g_scaler[oc] = scaler_sum;
        }
      }
    });
  });
}

}  // namespace kanfast
