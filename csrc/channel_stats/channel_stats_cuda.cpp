// CUDA registration of kanfast::channel_stats. Built only against a CUDA PyTorch; the kernels
// are in channel_stats_kernels.cu.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "channel_stats.h"
#include "channel_stats_kernels.h"

namespace kanfast {

namespace {

template <typename T>
struct CudaStorage {
  using type = T;
};
template <>
struct CudaStorage<at::Half> {
  using type = __half;
};
template <>
struct CudaStorage<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
const typename CudaStorage<T>::type* device_ptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<const typename CudaStorage<T>::type*>(t.data_ptr<T>()) : nullptr;
}

// x: (*) with channels along dim; grad: like x or absent -> per-channel statistics.
ChannelStatsResult channel_stats_cuda(const at::Tensor& x, int64_t dim, const c10::optional<at::Tensor>& grad,
                                      int64_t bins, double lo, double hi) {
  dim = check_channel_stats_args(x, dim, grad, bins, lo, hi);
  const c10::cuda::CUDAGuard guard(x.device());
  const bool with_grad = grad.has_value();
  ChannelStatsOutputs out(x.size(dim), bins, with_grad, x.device());
  if (x.numel() == 0) return out.as_tuple();
  const auto order = memory_order(x);
  const at::Tensor xv = channel_view(x, dim, order);
  const at::Tensor gv = with_grad ? channel_view(*grad, dim, order) : at::Tensor();
  const cuda::ChannelStatsShape shape{xv.size(0), xv.size(1), xv.size(2), bins, lo, hi};
  const at::Tensor workspace =
      at::empty({int64_t(cuda::channel_stats_workspace_bytes(shape))}, x.options().dtype(at::kByte));
  const cuda::ChannelStatsOutputPointers ptrs{
      out.count.data_ptr<int64_t>(), out.zeros.data_ptr<int64_t>(), out.nonpos.data_ptr<int64_t>(),
      out.hist.data_ptr<int64_t>(), out.sum.data_ptr<double>(), out.abs_sum.data_ptr<double>(),
      out.m2.data_ptr<double>(), out.min.data_ptr<double>(), out.max.data_ptr<double>(),
      with_grad ? out.prod_sum.data_ptr<double>() : nullptr, with_grad ? out.prod_abs_sum.data_ptr<double>() : nullptr};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_stats_cuda", [&] {
    const cudaError_t err = cuda::launch_channel_stats(device_ptr<scalar_t>(xv), device_ptr<scalar_t>(gv), shape, ptrs,
                                                       workspace.data_ptr(), at::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "kanfast CUDA kernel: ", cudaGetErrorString(err));
  });
  return out.as_tuple();
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, CUDA, m) { m.impl("channel_stats", &channel_stats_cuda); }

}  // namespace kanfast
