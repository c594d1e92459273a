// CUDA registration of kanfast::coupled_gather. Built only against a CUDA PyTorch; the kernel
// is in coupled_gather_kernels.cu.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstring>

#include "coupled_gather.h"
#include "coupled_gather_kernels.h"

namespace kanfast {

namespace {

cuda::GatherDtype gather_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return cuda::GatherDtype::kFloat32;
    case at::kDouble: return cuda::GatherDtype::kFloat64;
    case at::kHalf: return cuda::GatherDtype::kFloat16;
    case at::kBFloat16: return cuda::GatherDtype::kBFloat16;
    default: TORCH_CHECK(false, "coupled_gather: unsupported dtype ", t);
  }
}

// tensors[i] with n units along dims[i] -> tensors[i] with index.numel() units there.
std::vector<at::Tensor> coupled_gather_cuda(at::TensorList tensors, at::IntArrayRef dims, const at::Tensor& index,
                                            const c10::optional<at::Tensor>& scale,
                                            const c10::optional<at::Tensor>& fresh, at::OptionalIntArrayRef offsets,
                                            at::OptionalIntArrayRef blocks_arg, c10::optional<int64_t> units,
                                            at::OptionalIntArrayRef scale_rows, at::OptionalIntArrayRef fresh_rows) {
  int64_t min_n = 0;
  const std::vector<GatherLayout> layouts = check_coupled_gather_args(
      {tensors, dims, index, scale, fresh, offsets, blocks_arg, units, scale_rows, fresh_rows}, &min_n);
  const c10::cuda::CUDAGuard guard(index.device());
  const int64_t m = index.numel();
  if (m > 0 && !tensors.empty()) {  // one sync: the kernel must never read out of bounds
    const auto [lo, hi] = at::aminmax(index);
    const at::Tensor range = at::stack({lo, hi}).cpu();  // one device -> host copy
    check_index_range(range[0].item<int64_t>(), range[1].item<int64_t>(), min_n, units.has_value());
  }
  const std::vector<GatherBlock> blocks = gather_blocks(tensors, layouts, m);
  std::vector<cuda::GatherTensor> table;
  int64_t total = 0;
  for (const GatherBlock& b : blocks) {
    if (b.out.numel() == 0) continue;  // the kernel's search needs every entry to own elements
    const GatherLayout& l = b.layout;
    table.push_back({b.src.const_data_ptr(), b.out.data_ptr(), b.outer, b.size, b.inner, l.offset, l.block, l.n,
                     l.scale_row, l.fresh_row, total, gather_dtype(b.out.scalar_type())});
    total += b.out.numel();
  }
  if (total == 0) return outputs(blocks, tensors);
  // The table travels in one pinned host -> device copy on the stream, ordered before the kernel.
  const int64_t bytes = int64_t(table.size() * sizeof(cuda::GatherTensor));
  at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), table.data(), bytes);
  const at::Tensor device_table = host.to(index.device(), /*non_blocking=*/true);
  const at::Tensor idx = index.contiguous();
  const at::Tensor sc = scale.has_value() ? scale->contiguous() : at::Tensor();
  const at::Tensor fr = fresh.has_value() ? fresh->contiguous() : at::Tensor();
  const cudaError_t err = cuda::launch_coupled_gather(
      static_cast<const cuda::GatherTensor*>(device_table.const_data_ptr()), int64_t(table.size()), total,
      idx.const_data_ptr<int64_t>(), m, sc.defined() ? sc.const_data_ptr<double>() : nullptr,
      fr.defined() ? fr.const_data_ptr<bool>() : nullptr, at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "kanfast CUDA kernel: ", cudaGetErrorString(err));
  return outputs(blocks, tensors);
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, CUDA, m) { m.impl("coupled_gather", &coupled_gather_cuda); }

}  // namespace kanfast
