// kanfast::coupled_gather: rebuilds every tensor of a coupling group along its coupled dim in
// one call. Along dims[i], tensor i holds n units of blocks[i] positions from offsets[i]; the
// output holds m = index.numel() there: new unit k is unit index[k] · scale[scale_rows[i], k],
// and 0 where fresh[fresh_rows[i], k] (a row of -1: none); positions outside the units are
// carried. Per-tensor rows let weights, biases, norm statistics and optimizer moments with
// different rules share the call.
//
// CPU kernel: tensor i is viewed as contiguous (outer_i, size_i, inner_i); its output has
// outer_i·size'_i rows of inner_i elements. Each output position's source position, scale and
// zero flag are tabulated once per tensor (the dim is short); each tensor's rows are cut into
// cache-sized tasks and the tasks of all tensors run in a single at::parallel_for, so many
// small tensors (biases, BN statistics) share one parallel region with the large ones.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "coupled_gather.h"

namespace kanfast {

namespace {

// Rows of a (rows, m) or (m,) table of dtype on index's device; 0 when absent.
int64_t check_table(const char* name, const c10::optional<at::Tensor>& t, at::ScalarType dtype, int64_t m,
                    const at::Tensor& index) {
  if (!t.has_value()) return 0;
  TORCH_CHECK((t->dim() == 1 || t->dim() == 2) && t->size(-1) == m && t->scalar_type() == dtype, "coupled_gather: ",
              name, " must be a ", dtype == at::kBool ? "bool" : "float64", " tensor of shape (m,) or (rows, m) with m = ",
              m, ", got ", t->scalar_type(), " of shape ", t->sizes());
  TORCH_CHECK(t->device() == index.device(), "coupled_gather: ", name, " is on ", t->device(), " but index is on ",
              index.device());
  return t->dim() == 1 ? 1 : t->size(0);
}

// values[i] (default fallback) for each tensor, each in [low, high) (high < 0: unbounded).
std::vector<int64_t> int_list(const char* name, at::OptionalIntArrayRef values, size_t count, int64_t fallback,
                              int64_t low, int64_t high) {
  if (!values.has_value()) return std::vector<int64_t>(count, fallback);
  TORCH_CHECK(values->size() == count, "coupled_gather: ", name, " must have one entry per tensor (", count,
              "), got ", values->size());
  for (size_t i = 0; i < count; ++i) {
    const int64_t v = (*values)[i];
    if (high >= 0) {
      TORCH_CHECK(v >= low && v < high, "coupled_gather: ", name, "[", i, "] must be in [", low, ", ", high,
                  "), got ", v);
    } else {
      TORCH_CHECK(v >= low, "coupled_gather: ", name, "[", i, "] must be >= ", low, ", got ", v);
    }
  }
  return values->vec();
}

}  // namespace

std::vector<GatherLayout> check_coupled_gather_args(const GatherArgs& a, int64_t* min_n) {
  const size_t count = a.tensors.size();
  TORCH_CHECK(a.dims.size() == count, "coupled_gather: dims must have one entry per tensor (", count, "), got ",
              a.dims.size());
  TORCH_CHECK(a.index.dim() == 1 && a.index.scalar_type() == at::kLong,
              "coupled_gather: index must be a 1-dim int64 tensor (m,), got ", a.index.scalar_type(), " of shape ",
              a.index.sizes());
  const int64_t m = a.index.numel();
  const int64_t scales = check_table("scale", a.scale, at::kDouble, m, a.index);
  const int64_t freshes = check_table("fresh", a.fresh, at::kBool, m, a.index);
  const auto offsets = int_list("offsets", a.offsets, count, 0, 0, -1);
  const auto blocks = int_list("blocks", a.blocks, count, 1, 1, -1);
  const auto scale_rows = int_list("scale_rows", a.scale_rows, count, scales ? 0 : -1, -1, scales);
  const auto fresh_rows = int_list("fresh_rows", a.fresh_rows, count, freshes ? 0 : -1, -1, freshes);
  TORCH_CHECK(!a.units.has_value() || *a.units >= 0, "coupled_gather: units must be None or >= 0, got ",
              a.units.value_or(0));
  std::vector<GatherLayout> layouts;
  layouts.reserve(count);
  *min_n = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor& t = a.tensors[i];
    TORCH_CHECK(t.is_floating_point(), "coupled_gather: tensors[", i, "] must be a floating-point tensor, got ",
                t.scalar_type());
    TORCH_CHECK(t.device() == a.index.device(), "coupled_gather: tensors[", i, "] is on ", t.device(),
                " but index is on ", a.index.device());
    TORCH_CHECK(t.dim() >= 1 && a.dims[i] >= -t.dim() && a.dims[i] < t.dim(), "coupled_gather: dims[", i,
                "] must be in [", -t.dim(), ", ", t.dim(), ") for tensors[", i, "] of shape ", t.sizes(), ", got ",
                a.dims[i]);
    const int64_t dim = a.dims[i] < 0 ? a.dims[i] + t.dim() : a.dims[i];
    const int64_t size = t.size(dim), offset = offsets[i], block = blocks[i];
    int64_t n;
    if (a.units.has_value()) {
      n = *a.units;
      TORCH_CHECK(offset + n * block <= size, "coupled_gather: offsets[", i, "] + units * blocks[", i, "] = ", offset,
                  " + ", n, " * ", block, " exceeds the size ", size, " of tensors[", i, "] (shape ", t.sizes(),
                  ") along dims[", i, "]");
    } else {
      TORCH_CHECK(offset <= size && (size - offset) % block == 0, "coupled_gather: with units=None, tensors[", i,
                  "] of shape ", t.sizes(), " must hold whole units after offsets[", i, "] = ", offset,
                  " along dims[", i, "] (", size, " - ", offset, " must be a multiple of blocks[", i, "] = ", block,
                  ")");
      n = (size - offset) / block;
    }
    *min_n = std::min(*min_n, n);
    layouts.push_back({dim, offset, block, n, scale_rows[i], fresh_rows[i]});
  }
  return layouts;
}

void check_index_range(int64_t lo, int64_t hi, int64_t min_n, bool units_given) {
  TORCH_CHECK(lo >= 0 && hi < min_n, "coupled_gather: index values must be in [0, ", min_n, ") (",
              units_given ? "units" : "the smallest unit count among tensors", "), got values in [", lo, ", ", hi,
              "]");
}

std::vector<GatherBlock> gather_blocks(at::TensorList tensors, const std::vector<GatherLayout>& layouts, int64_t m) {
  std::vector<GatherBlock> blocks;
  blocks.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const GatherLayout& l = layouts[i];
    int64_t outer = 1, inner = 1;
    for (int64_t j = 0; j < l.dim; ++j) outer *= t.size(j);
    for (int64_t j = l.dim + 1; j < t.dim(); ++j) inner *= t.size(j);
    const int64_t size = t.size(l.dim), out_size = size + (m - l.n) * l.block;
    // A strided input is copied once here: the kernels then read whole contiguous rows.
    blocks.push_back({t.contiguous().view({outer, size, inner}), at::empty({outer, out_size, inner}, t.options()),
                      outer, size, inner, out_size, l});
  }
  return blocks;
}

std::vector<at::Tensor> outputs(const std::vector<GatherBlock>& blocks, at::TensorList tensors) {
  std::vector<at::Tensor> out;
  out.reserve(blocks.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto shape = tensors[i].sizes().vec();
    shape[blocks[i].layout.dim] = blocks[i].out_size;
    out.push_back(blocks[i].out.view(shape));
  }
  return out;
}

namespace {

constexpr int64_t kChunkElems = 32768;  // output elements per parallel task: 128 KiB of float32

// Per output position of one tensor's coupled dim: the source position, the scale (1 outside
// the units) and whether it is zeroed.
struct PositionTable {
  std::vector<int64_t> src;
  std::vector<double> scale;  // empty: the tensor is unscaled
  std::vector<uint8_t> zero;  // empty: never zeroed
};

PositionTable position_table(const GatherBlock& b, const int64_t* index, int64_t m, const double* scale,
                             const bool* fresh) {
  const GatherLayout& l = b.layout;
  PositionTable t;
  t.src.resize(b.out_size);
  if (l.scale_row >= 0) t.scale.assign(b.out_size, 1.0);
  if (l.fresh_row >= 0) t.zero.assign(b.out_size, 0);
  const int64_t end = l.offset + m * l.block, shift = (m - l.n) * l.block;
  for (int64_t p = 0; p < b.out_size; ++p) {
    if (p < l.offset || p >= end) {
      t.src[p] = p < l.offset ? p : p - shift;
      continue;
    }
    const int64_t k = (p - l.offset) / l.block;
    t.src[p] = l.offset + index[k] * l.block + (p - l.offset) % l.block;
    if (l.scale_row >= 0) t.scale[p] = scale[l.scale_row * m + k];
    if (l.fresh_row >= 0) t.zero[p] = fresh[l.fresh_row * m + k];
  }
  return t;
}

// Output rows [begin, end) of one tensor; row r = (o, p) writes inner elements.
struct Task {
  size_t tensor;
  int64_t begin, end;
};

// Row (o, p) of the output is source row (o, src[p]), scaled (in T, as torch multiplies a
// tensor by a scale converted to its dtype) or zero. SCALE / FRESH are compile-time, and rows
// of one element (the coupled dim innermost, as in a consumer's weight) run as a tight gather
// over the positions of each outer slice instead of one row step per element.
template <typename T, bool SCALE, bool FRESH>
void gather_rows(const GatherBlock& b, const PositionTable& pt, int64_t begin, int64_t end) {
  const int64_t inner = b.inner, out_size = b.out_size;
  const T* src = b.src.const_data_ptr<T>();
  T* dst = b.out.data_ptr<T>() + begin * inner;
  const int64_t* from = pt.src.data();
  const double* scale = pt.scale.data();
  const uint8_t* zero = pt.zero.data();
  for (int64_t r = begin; r < end;) {
    const int64_t o = r / out_size, p0 = r % out_size, p1 = std::min(out_size, p0 + (end - r));
    const T* slice = src + o * b.size * inner;
    if (inner == 1) {
      for (int64_t p = p0; p < p1; ++p, ++dst) {
        T v = slice[from[p]];
        if (SCALE) v = v * static_cast<T>(scale[p]);
        *dst = FRESH && zero[p] ? T(0) : v;
      }
    } else {
      for (int64_t p = p0; p < p1; ++p, dst += inner) {
        const T* row = slice + from[p] * inner;
        if (FRESH && zero[p]) {
          std::fill(dst, dst + inner, T(0));
        } else if (SCALE) {
          const T s = static_cast<T>(scale[p]);
          for (int64_t j = 0; j < inner; ++j) dst[j] = row[j] * s;
        } else {
          std::copy(row, row + inner, dst);
        }
      }
    }
    r += p1 - p0;
  }
}

template <typename T>
void gather_task(const GatherBlock& b, const PositionTable& pt, const Task& t) {
  const bool scaled = !pt.scale.empty(), zeroed = !pt.zero.empty();
  if (scaled) {
    zeroed ? gather_rows<T, true, true>(b, pt, t.begin, t.end) : gather_rows<T, true, false>(b, pt, t.begin, t.end);
  } else {
    zeroed ? gather_rows<T, false, true>(b, pt, t.begin, t.end) : gather_rows<T, false, false>(b, pt, t.begin, t.end);
  }
}

std::vector<at::Tensor> coupled_gather_cpu(at::TensorList tensors, at::IntArrayRef dims, const at::Tensor& index,
                                           const c10::optional<at::Tensor>& scale,
                                           const c10::optional<at::Tensor>& fresh, at::OptionalIntArrayRef offsets,
                                           at::OptionalIntArrayRef blocks_arg, c10::optional<int64_t> units,
                                           at::OptionalIntArrayRef scale_rows, at::OptionalIntArrayRef fresh_rows) {
  int64_t min_n = 0;
  const std::vector<GatherLayout> layouts = check_coupled_gather_args(
      {tensors, dims, index, scale, fresh, offsets, blocks_arg, units, scale_rows, fresh_rows}, &min_n);
  const int64_t m = index.numel();
  const at::Tensor idx = index.contiguous();
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  if (m > 0 && !tensors.empty()) {
    const auto [lo, hi] = std::minmax_element(ip, ip + m);
    check_index_range(*lo, *hi, min_n, units.has_value());
  }
  const std::vector<GatherBlock> blocks = gather_blocks(tensors, layouts, m);
  const at::Tensor sc = scale.has_value() ? scale->contiguous() : at::Tensor();
  const at::Tensor fr = fresh.has_value() ? fresh->contiguous() : at::Tensor();
  const double* sp = sc.defined() ? sc.const_data_ptr<double>() : nullptr;
  const bool* fp = fr.defined() ? fr.const_data_ptr<bool>() : nullptr;
  // Each tensor's rows cut into tasks of about kChunkElems elements; a small tensor is one task.
  std::vector<PositionTable> tables(blocks.size());
  std::vector<Task> tasks;
  int64_t elems = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (blocks[i].out.numel() == 0) continue;
    tables[i] = position_table(blocks[i], ip, m, sp, fp);
    const int64_t rows = blocks[i].outer * blocks[i].out_size, inner = blocks[i].inner;
    const int64_t per_task = std::max<int64_t>(1, kChunkElems / inner);
    for (int64_t r = 0; r < rows; r += per_task) tasks.push_back({i, r, std::min(rows, r + per_task)});
    elems += blocks[i].out.numel();
  }
  if (tasks.empty()) return outputs(blocks, tensors);
  // One task per thread step; all in the calling thread when the whole call is one chunk's work.
  const int64_t grain = elems <= kChunkElems ? int64_t(tasks.size()) : 1;
  at::parallel_for(0, int64_t(tasks.size()), grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const Task& task = tasks[t];
      const GatherBlock& b = blocks[task.tensor];
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.out.scalar_type(), "coupled_gather_cpu", [&] {
        gather_task<scalar_t>(b, tables[task.tensor], task);
      });
    }
  });
  return outputs(blocks, tensors);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def("coupled_gather(Tensor[] tensors, int[] dims, Tensor index, Tensor? scale=None, Tensor? fresh=None, "
        "int[]? offsets=None, int[]? blocks=None, int? units=None, int[]? scale_rows=None, "
        "int[]? fresh_rows=None) -> Tensor[]",
        {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) { m.impl("coupled_gather", &coupled_gather_cpu); }

}  // namespace kanfast
