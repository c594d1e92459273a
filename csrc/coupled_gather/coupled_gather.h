// Argument checks and tensor plumbing of kanfast::coupled_gather shared by the CPU kernel and
// the CUDA glue: both see tensor i as a contiguous (outer_i, n_i, inner_i) block around its dim.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <vector>

namespace kanfast {

struct GatherBlock {
  at::Tensor src;  // (outer, n, inner) contiguous view of the input
  at::Tensor out;  // (outer, m, inner) contiguous, viewed back to the output shape by outputs()
  int64_t outer, n, inner;
};

// Checks every argument but the index values (errors name it, and the tensor's position in
// the list); returns the smallest coupled size n_i, the bound of the index values.
int64_t check_coupled_gather_args(at::TensorList tensors, at::IntArrayRef dims, const at::Tensor& index,
                                  const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& fresh);

// The index values, in [lo, hi], must lie in [0, min_n).
void check_index_range(int64_t lo, int64_t hi, int64_t min_n);

// One block per tensor, outputs allocated (uninitialised) on the tensors' device.
std::vector<GatherBlock> gather_blocks(at::TensorList tensors, at::IntArrayRef dims, int64_t m);

// The outputs in the tensors' shapes, m along each dim.
std::vector<at::Tensor> outputs(const std::vector<GatherBlock>& blocks, at::TensorList tensors, at::IntArrayRef dims,
                                int64_t m);

}  // namespace kanfast
