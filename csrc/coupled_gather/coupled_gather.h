// Argument checks and tensor plumbing of kanfast::coupled_gather shared by the CPU kernel and
// the CUDA glue: both see tensor i as a contiguous (outer_i, size_i, inner_i) block around its
// coupled dim, whose positions [offset_i, offset_i + n_i·block_i) hold the units.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/OptionalArrayRef.h>
#include <c10/util/Optional.h>

#include <vector>

namespace kanfast {

// Where a tensor's units sit along its coupled dim, and which table rows it uses (-1: none).
struct GatherLayout {
  int64_t dim, offset, block, n, scale_row, fresh_row;
};

struct GatherBlock {
  at::Tensor src;  // (outer, size, inner) contiguous view of the input
  at::Tensor out;  // (outer, out_size, inner) contiguous, viewed back to the output shape by outputs()
  int64_t outer, size, inner, out_size;
  GatherLayout layout;
};

// Every argument of coupled_gather as the schema passes it.
struct GatherArgs {
  at::TensorList tensors;
  at::IntArrayRef dims;
  const at::Tensor& index;
  const c10::optional<at::Tensor>& scale;  // (R, m) or (m,) float64
  const c10::optional<at::Tensor>& fresh;  // (F, m) or (m,) bool
  at::OptionalIntArrayRef offsets, blocks;
  c10::optional<int64_t> units;
  at::OptionalIntArrayRef scale_rows, fresh_rows;
};

// Checks every argument but the index values (errors name it, and the tensor's position in
// the list); returns each tensor's layout with the defaults filled in, and in *min_n the
// smallest unit count n_i, the bound of the index values.
std::vector<GatherLayout> check_coupled_gather_args(const GatherArgs& a, int64_t* min_n);

// The index values, in [lo, hi], must lie in [0, min_n).
void check_index_range(int64_t lo, int64_t hi, int64_t min_n, bool units_given);

// One block per tensor, outputs allocated (uninitialised) on the tensors' device.
std::vector<GatherBlock> gather_blocks(at::TensorList tensors, const std::vector<GatherLayout>& layouts, int64_t m);

// The outputs in the tensors' shapes, out_size along each coupled dim.
std::vector<at::Tensor> outputs(const std::vector<GatherBlock>& blocks, at::TensorList tensors);

}  // namespace kanfast
