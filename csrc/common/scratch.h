// Scratch buffers for the chunk loops of the fused ops, kept per thread and reused across
// calls on the CPU.
//
// Why: the CPU allocator hands multi-MiB blocks back to the operating system when they are
// freed, so a fresh chunk buffer page-faults in again on every call — a few µs per 4 KiB
// page, as much time as the basis kernels themselves at small and medium shapes. On the GPU
// the caching allocator already reuses memory, so there this is plain at::empty.
//
// A scratch tensor never leaves the op that asked for it. Each thread keeps at most one
// buffer per slot, of at most kMaxRetainedScratchBytes; larger requests get a buffer that is
// freed after use, as does a request while the slot's buffer is still in use.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/accumulate.h>

#include <array>

namespace kanfast {

enum class ScratchSlot { kFeatures = 0, kFeatureGrad = 1 };
constexpr int kScratchSlots = 2;
constexpr int64_t kMaxRetainedScratchBytes = 16 << 20;

inline at::Tensor scratch(ScratchSlot slot, at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
  if (!options.device().is_cpu() || bytes > kMaxRetainedScratchBytes) return at::empty(sizes, options);
  thread_local std::array<at::Storage, kScratchSlots> retained;
  at::Storage& storage = retained[static_cast<int>(slot)];
  const bool reusable = storage && storage.use_count() == 1 && static_cast<int64_t>(storage.nbytes()) >= bytes;
  if (!reusable) storage = at::empty({bytes}, options.dtype(at::kByte)).storage();
  return at::empty({0}, options).set_(storage, 0, sizes);
}

}  // namespace kanfast
