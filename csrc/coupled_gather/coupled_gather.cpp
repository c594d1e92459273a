// kanfast::coupled_gather: rebuilds several tensors of a coupling group along each one's
// coupled dim in one call: out_i.select(d_i, k) = t_i.select(d_i, index[k]) * scale[k], and 0
// where fresh[k]. The one rule serves weights, biases, norm statistics and optimizer moments.
//
// CPU kernel: tensor i is viewed as contiguous (outer_i, n_i, inner_i); its output has
// outer_i·m rows of inner_i elements. Each tensor's rows are cut into cache-sized tasks and
// the tasks of all tensors run in a single at::parallel_for, so many small tensors (biases,
// BN statistics) share one parallel region with the large ones instead of paying one each.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "coupled_gather.h"

namespace kanfast {

int64_t check_coupled_gather_args(at::TensorList tensors, at::IntArrayRef dims, const at::Tensor& index,
                                  const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& fresh) {
  TORCH_CHECK(dims.size() == tensors.size(), "coupled_gather: dims must have one entry per tensor (",
              tensors.size(), "), got ", dims.size());
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong,
              "coupled_gather: index must be a 1-dim int64 tensor (m,), got ", index.scalar_type(), " of shape ",
              index.sizes());
  const int64_t m = index.numel();
  if (scale.has_value()) {
    TORCH_CHECK(scale->dim() == 1 && scale->numel() == m && scale->scalar_type() == at::kDouble,
                "coupled_gather: scale must be a float64 tensor of shape (m,) = (", m, ",), got ",
                scale->scalar_type(), " of shape ", scale->sizes());
    TORCH_CHECK(scale->device() == index.device(), "coupled_gather: scale is on ", scale->device(),
                " but index is on ", index.device());
  }
  if (fresh.has_value()) {
    TORCH_CHECK(fresh->dim() == 1 && fresh->numel() == m && fresh->scalar_type() == at::kBool,
                "coupled_gather: fresh must be a bool tensor of shape (m,) = (", m, ",), got ",
                fresh->scalar_type(), " of shape ", fresh->sizes());
    TORCH_CHECK(fresh->device() == index.device(), "coupled_gather: fresh is on ", fresh->device(),
                " but index is on ", index.device());
  }
  int64_t min_n = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.is_floating_point(), "coupled_gather: tensors[", i, "] must be a floating-point tensor, got ",
                t.scalar_type());
    TORCH_CHECK(t.device() == index.device(), "coupled_gather: tensors[", i, "] is on ", t.device(),
                " but index is on ", index.device());
    TORCH_CHECK(t.dim() >= 1 && dims[i] >= -t.dim() && dims[i] < t.dim(), "coupled_gather: dims[", i,
                "] must be in [", -t.dim(), ", ", t.dim(), ") for tensors[", i, "] of shape ", t.sizes(), ", got ",
                dims[i]);
    min_n = std::min(min_n, t.size(dims[i] < 0 ? dims[i] + t.dim() : dims[i]));
  }
  return min_n;
}

void check_index_range(int64_t lo, int64_t hi, int64_t min_n) {
  TORCH_CHECK(lo >= 0 && hi < min_n, "coupled_gather: index values must be in [0, ", min_n,
              ") (the smallest coupled size among tensors), got values in [", lo, ", ", hi, "]");
}

std::vector<GatherBlock> gather_blocks(at::TensorList tensors, at::IntArrayRef dims, int64_t m) {
  std::vector<GatherBlock> blocks;
  blocks.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const int64_t d = dims[i] < 0 ? dims[i] + t.dim() : dims[i];
    int64_t outer = 1, inner = 1;
    for (int64_t j = 0; j < d; ++j) outer *= t.size(j);
    for (int64_t j = d + 1; j < t.dim(); ++j) inner *= t.size(j);
    // A strided input is copied once here: the kernels then read whole contiguous rows.
    blocks.push_back({t.contiguous().view({outer, t.size(d), inner}), at::empty({outer, m, inner}, t.options()),
                      outer, t.size(d), inner});
  }
  return blocks;
}

std::vector<at::Tensor> outputs(const std::vector<GatherBlock>& blocks, at::TensorList tensors, at::IntArrayRef dims,
                                int64_t m) {
  std::vector<at::Tensor> out;
  out.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto shape = tensors[i].sizes().vec();
    shape[dims[i] < 0 ? dims[i] + tensors[i].dim() : dims[i]] = m;
    out.push_back(blocks[i].out.view(shape));
  }
  return out;
}

namespace {

constexpr int64_t kChunkElems = 32768;  // output elements per parallel task: 128 KiB of float32

// Output rows [begin, end) of one tensor; row r = (o, k) writes inner elements.
struct Task {
  size_t tensor;
  int64_t begin, end;
};

// Row k of each output is source row index[k], scaled (in T, as torch multiplies a tensor by
// a scale converted to its dtype) or zero. SCALE / FRESH are compile-time so that the
// per-element loop of a dim that is innermost (inner == 1) stays branch-free.
template <typename T, bool SCALE, bool FRESH>
void gather_rows(const GatherBlock& b, int64_t begin, int64_t end, const int64_t* index, const double* scale,
                 const bool* fresh, int64_t m) {
  const int64_t inner = b.inner;
  const T* src = b.src.const_data_ptr<T>();
  T* dst = b.out.data_ptr<T>() + begin * inner;
  int64_t o = begin / m, k = begin % m;
  for (int64_t r = begin; r < end; ++r, dst += inner) {
    const T* row = src + (o * b.n + index[k]) * inner;
    const T s = SCALE ? static_cast<T>(scale[k]) : T(1);
    if (FRESH && fresh[k]) {
      std::fill(dst, dst + inner, T(0));
    } else if (inner == 1) {
      dst[0] = SCALE ? row[0] * s : row[0];
    } else if (SCALE) {
      for (int64_t j = 0; j < inner; ++j) dst[j] = row[j] * s;
    } else {
      std::copy(row, row + inner, dst);
    }
    if (++k == m) k = 0, ++o;
  }
}

template <typename T>
void gather_task(const GatherBlock& b, const Task& t, const int64_t* index, const double* scale, const bool* fresh,
                 int64_t m) {
  if (scale != nullptr) {
    fresh != nullptr ? gather_rows<T, true, true>(b, t.begin, t.end, index, scale, fresh, m)
                     : gather_rows<T, true, false>(b, t.begin, t.end, index, scale, fresh, m);
  } else {
    fresh != nullptr ? gather_rows<T, false, true>(b, t.begin, t.end, index, scale, fresh, m)
                     : gather_rows<T, false, false>(b, t.begin, t.end, index, scale, fresh, m);
  }
}

// tensors[i] with dim dims[i] -> tensors[i] with index.numel() along dims[i].
std::vector<at::Tensor> coupled_gather_cpu(at::TensorList tensors, at::IntArrayRef dims, const at::Tensor& index,
                                           const c10::optional<at::Tensor>& scale,
                                           const c10::optional<at::Tensor>& fresh) {
  const int64_t min_n = check_coupled_gather_args(tensors, dims, index, scale, fresh);
  const int64_t m = index.numel();
  const at::Tensor idx = index.contiguous();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  if (m > 0 && !tensors.empty()) {
    const auto [lo, hi] = std::minmax_element(ip, ip + m);
    check_index_range(*lo, *hi, min_n);
  }
  const std::vector<GatherBlock> blocks = gather_blocks(tensors, dims, m);
  // Each tensor's rows cut into tasks of about kChunkElems elements; a small tensor is one task.
  std::vector<Task> tasks;
  int64_t elems = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    const int64_t rows = blocks[i].outer * m, inner = std::max<int64_t>(1, blocks[i].inner);
    if (blocks[i].out.numel() == 0) continue;
    const int64_t per_task = std::max<int64_t>(1, kChunkElems / inner);
    for (int64_t r = 0; r < rows; r += per_task) tasks.push_back({i, r, std::min(rows, r + per_task)});
    elems += blocks[i].out.numel();
  }
  if (tasks.empty()) return outputs(blocks, tensors, dims, m);
  const at::Tensor sc = scale.has_value() ? scale->contiguous() : at::Tensor();
  const at::Tensor fr = fresh.has_value() ? fresh->contiguous() : at::Tensor();
  const double* sp = sc.defined() ? sc.const_data_ptr<double>() : nullptr;
  const bool* fp = fr.defined() ? fr.const_data_ptr<bool>() : nullptr;
  // One task per thread step; all in the calling thread when the whole call is one chunk's work.
  const int64_t grain = elems <= kChunkElems ? int64_t(tasks.size()) : 1;
  at::parallel_for(0, int64_t(tasks.size()), grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const Task& task = tasks[t];
      const GatherBlock& b = blocks[task.tensor];
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.out.scalar_type(), "coupled_gather_cpu", [&] {
        gather_task<scalar_t>(b, task, ip, sp, fp, m);
      });
    }
  });
  return outputs(blocks, tensors, dims, m);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def("coupled_gather(Tensor[] tensors, int[] dims, Tensor index, Tensor? scale=None, Tensor? fresh=None) -> "
        "Tensor[]",
        {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) { m.impl("coupled_gather", &coupled_gather_cpu); }

}  // namespace kanfast
