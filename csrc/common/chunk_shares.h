// Running a fused op's chunk loop (the rows of KANLinear) on the CPU threads.
//
// By default every chunk is spread over all threads in turn: its basis pass by the basis
// kernels' parallel_for, its GEMMs by the BLAS. Where the combined
// weight is small, the threads instead split the chunks into contiguous shares and each runs
// its chunks' basis passes and GEMMs alone (ATen ops inside a parallel region run on the
// calling thread), so the features a core writes are read back from its own L2 rather than
// across cores. Measured with bench/kan_linear_ratios.py: KANLinear 64->64 1.53x -> 1.32x the
// dense floor, 256->256 1.24x -> 1.13x; large weights run better multi-threaded.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <cstdint>

namespace kanfast {

constexpr int64_t kCpuPerThreadMaxWeightBytes = 4 << 20;

// The number of shares: one per thread on the CPU with a weight of at most
// kCpuPerThreadMaxWeightBytes, else 1 (every chunk on all threads).
inline int chunk_shares(const at::Tensor& x, int64_t weight_bytes) {
  const int threads = at::get_num_threads();
  return x.is_cpu() && threads > 1 && weight_bytes <= kCpuPerThreadMaxWeightBytes ? threads : 1;
}

// Shares that for_each_chunk(total, chunk, shares, ...) runs: no more than there are chunks.
inline int64_t shares_used(int64_t total, int64_t chunk, int shares) {
  return std::min<int64_t>(shares, (total + chunk - 1) / chunk);
}

// Calls fn(share, begin, count) for every chunk [begin, begin + count) of `total` items, chunks
// of `chunk` items. Share t of `shares` takes a contiguous run of chunks; with shares > 1 they
// run in parallel, one thread each. Which chunks a share gets depends only on the arguments, so
// per-share partial sums reduced in share order give the same result on every run.
template <typename Fn>
void for_each_chunk(int64_t total, int64_t chunk, int shares, Fn&& fn) {
  const int64_t chunks = (total + chunk - 1) / chunk;
  const int64_t used = shares_used(total, chunk, shares);
  const auto run_share = [&](int64_t t) {
    for (int64_t c = t * chunks / used; c < (t + 1) * chunks / used; ++c) {
      fn(t, c * chunk, std::min(chunk, total - c * chunk));
    }
  };
  if (used > 1) {
    // the caller's dispatch state (below autograd, grad mode, ...) for the ATen ops on workers
    const at::ThreadLocalState state;
    at::parallel_for(0, used, 1, [&](int64_t t0, int64_t t1) {
      const at::ThreadLocalStateGuard guard(state);
      for (int64_t t = t0; t < t1; ++t) run_share(t);
    });
  } else if (used == 1) {
    run_share(0);
  }
}

}  // namespace kanfast
