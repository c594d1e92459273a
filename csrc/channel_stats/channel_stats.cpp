// kanfast::channel_stats: per-channel partial statistics of an activation tensor in one pass
// (count, Σx, Σ|x|, M2, zeros, non-positives, min, max, histogram, Σx·g, Σ|x·g|).
//
// CPU kernel: x is viewed as (outer, channels, inner) in memory order. The elements are cut
// into cache-sized segments of one channel (inner > 1: a piece of a contiguous row) or of a
// group of SIMD-width channels (inner == 1: a block of rows). Each segment is reduced in
// float32 SIMD lanes (float64 for double input), twice — sums first, then squared deviations
// from the segment mean, still in L1 — and merged in float64 (Chan's formula) into the
// partials of its chunk; chunks run in parallel and are merged in a fixed order at the end,
// so the result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <type_traits>

#include "channel_stats.h"
#include "kanfast/channel_stats.h"
#include "kanfast/cpu/lanes.h"

namespace kanfast {

ChannelStatsOutputs::ChannelStatsOutputs(int64_t channels, int64_t bins, bool with_grad, const at::Device& device) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble).device(device);
  const auto i64 = at::TensorOptions().dtype(at::kLong).device(device);
  count = at::zeros({channels}, i64), zeros = at::zeros({channels}, i64), nonpos = at::zeros({channels}, i64);
  sum = at::zeros({channels}, f64), abs_sum = at::zeros({channels}, f64), m2 = at::zeros({channels}, f64);
  min = at::full({channels}, std::numeric_limits<double>::infinity(), f64);
  max = at::full({channels}, -std::numeric_limits<double>::infinity(), f64);
  hist = at::zeros({channels, bins}, i64);
  prod_sum = at::zeros({with_grad ? channels : 0}, f64), prod_abs_sum = at::zeros({with_grad ? channels : 0}, f64);
}

ChannelStatsResult ChannelStatsOutputs::as_tuple() const {
  return {count, sum, abs_sum, m2, zeros, nonpos, min, max, hist, prod_sum, prod_abs_sum};
}

int64_t check_channel_stats_args(const at::Tensor& x, int64_t dim, const c10::optional<at::Tensor>& grad,
                                 int64_t bins, double lo, double hi) {
  TORCH_CHECK(x.is_floating_point(), "channel_stats: x must be a floating-point tensor, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "channel_stats: x must have at least one dim (the channels), got a 0-dim tensor");
  TORCH_CHECK(dim >= -x.dim() && dim < x.dim(), "channel_stats: dim must be in [", -x.dim(), ", ", x.dim(),
              ") for x of shape ", x.sizes(), ", got ", dim);
  if (grad.has_value()) {
    TORCH_CHECK(grad->sizes() == x.sizes(), "channel_stats: grad must have x's shape ", x.sizes(), ", got ",
                grad->sizes());
    TORCH_CHECK(grad->scalar_type() == x.scalar_type(), "channel_stats: grad must have x's dtype ",
                x.scalar_type(), ", got ", grad->scalar_type());
    TORCH_CHECK(grad->device() == x.device(), "channel_stats: grad is on ", grad->device(), " but x is on ",
                x.device());
  }
  TORCH_CHECK(bins >= 0, "channel_stats: bins must be >= 0, got ", bins);
  TORCH_CHECK(bins == 0 || (std::isfinite(lo) && std::isfinite(hi) && lo < hi),
              "channel_stats: with bins > 0 the histogram range (lo, hi) must be finite with lo < hi, got (", lo,
              ", ", hi, ")");
  return dim < 0 ? dim + x.dim() : dim;
}

std::vector<int64_t> memory_order(const at::Tensor& x) {
  std::vector<int64_t> order(x.dim());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.stride(a) > x.stride(b); });
  return order;
}

at::Tensor channel_view(const at::Tensor& t, int64_t dim, const std::vector<int64_t>& order) {
  const at::Tensor p = t.permute(order).contiguous();
  const int64_t pos = std::find(order.begin(), order.end(), dim) - order.begin();
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < pos; ++i) outer *= p.size(i);
  for (int64_t i = pos + 1; i < p.dim(); ++i) inner *= p.size(i);
  return p.view({outer, t.size(dim), inner});
}

namespace {

using cpu::Lanes;
using cpu::Vec;

constexpr int64_t kSegment = 1024;      // elements per segment (inner > 1): 4 KiB of float32, in L1
constexpr int64_t kBlockElems = 16384;  // elements per row block (inner == 1)
constexpr int64_t kMaxChunks = 16;      // fixed, not per-thread: results independent of thread count

template <typename T>
using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Integer lanes matching V's comparisons (one count per lane), or int64_t for a scalar.
template <typename V>
using CountOf = std::conditional_t<std::is_arithmetic_v<V>, int64_t, decltype(V{} < V{})>;

// One segment's statistics in float64.
struct Segment {
  int64_t n = 0, zeros = 0, nonpos = 0;
  double sum = 0, abs_sum = 0, m2 = 0, prod = 0, prod_abs = 0;
  double mn = std::numeric_limits<double>::infinity(), mx = -std::numeric_limits<double>::infinity();
};

// Running sums in lanes V (a SIMD vector or a scalar for tails).
template <typename V>
struct Sums {
  V sum{}, abs{}, prod{}, prod_abs{};
  using S = typename LaneScalar<V>::type;
  V mn = V{} + std::numeric_limits<S>::infinity(), mx = V{} - std::numeric_limits<S>::infinity();
  CountOf<V> zeros{}, nonpos{};

  template <bool GRAD>
  void add(V v, V g) {
    const V zero{};
    sum += v;
    abs += v < zero ? -v : v;
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    zeros += (v == zero) & 1;  // a vector comparison is -1 per true lane, a scalar one 1
    nonpos += (v <= zero) & 1;
    if constexpr (GRAD) {
      const V p = v * g;
      prod += p;
      prod_abs += p < zero ? -p : p;
    }
  }
};

// Adds lane l of s (or the scalar s) into seg.
template <typename V>
void add_lane(Segment& seg, const Sums<V>& s, int l) {
  auto at = [l](auto v) -> double {
    if constexpr (std::is_arithmetic_v<decltype(v)>) return double(v);
    else return double(v[l]);
  };
  seg.sum += at(s.sum), seg.abs_sum += at(s.abs), seg.prod += at(s.prod), seg.prod_abs += at(s.prod_abs);
  seg.mn = std::min(seg.mn, at(s.mn)), seg.mx = std::max(seg.mx, at(s.mx));
  seg.zeros += int64_t(at(s.zeros)), seg.nonpos += int64_t(at(s.nonpos));
}

template <typename T>
inline Vec<Acc<T>> load_acc(const T* p, int count = Lanes<Acc<T>>::width) {
  if constexpr (std::is_same_v<T, Acc<T>>) {
    return cpu::load_lanes<32>(p, 1, count);
  } else {
    Vec<Acc<T>> v{};
    for (int l = 0; l < count; ++l) v[l] = static_cast<Acc<T>>(p[l]);
    return v;
  }
}

// A chunk's per-channel partials, float64 / int64.
struct Partial {
  Partial(int64_t channels, int64_t bins)
      : n(channels, 0), zeros(channels, 0), nonpos(channels, 0), hist(channels * bins, 0), sum(channels, 0),
        abs_sum(channels, 0), m2(channels, 0), prod(channels, 0), prod_abs(channels, 0),
        mn(channels, std::numeric_limits<double>::infinity()), mx(channels, -std::numeric_limits<double>::infinity()) {}

  void add(int64_t c, const Segment& s) {
    chan_merge(n[c], sum[c], m2[c], s.n, s.sum, s.m2);
    abs_sum[c] += s.abs_sum, prod[c] += s.prod, prod_abs[c] += s.prod_abs;
    zeros[c] += s.zeros, nonpos[c] += s.nonpos;
    mn[c] = std::min(mn[c], s.mn), mx[c] = std::max(mx[c], s.mx);
  }

  void add(const Partial& o) {
    for (size_t c = 0; c < n.size(); ++c) {
      chan_merge(n[c], sum[c], m2[c], o.n[c], o.sum[c], o.m2[c]);
      abs_sum[c] += o.abs_sum[c], prod[c] += o.prod[c], prod_abs[c] += o.prod_abs[c];
      zeros[c] += o.zeros[c], nonpos[c] += o.nonpos[c];
      mn[c] = std::min(mn[c], o.mn[c]), mx[c] = std::max(mx[c], o.mx[c]);
    }
    for (size_t i = 0; i < hist.size(); ++i) hist[i] += o.hist[i];
  }

  std::vector<int64_t> n, zeros, nonpos, hist;
  std::vector<double> sum, abs_sum, m2, prod, prod_abs, mn, mx;
};

template <typename T>
struct Job {
  const T* x;     // (outer, channels, inner) contiguous
  const T* grad;  // same layout, or nullptr
  int64_t outer, channels, inner;
  int64_t bins;
  Acc<T> lo, scale;  // histogram: bin = floor((x - lo)·scale), clamped
  int64_t items, chunks, segments_per_row, rows_per_block;
  std::vector<Partial>* partials;
};

// Sum of squared deviations of len values from their (rounded) mean, corrected for the
// rounding: Σ(x-m')² - (Σ(x-m'))²/n is exact for any shift m'.
template <typename T>
double deviations(const T* p, int64_t len, Acc<T> mean) {
  using A = Acc<T>;
  constexpr int W = Lanes<A>::width;
  Vec<A> dv{}, d2v{};
  A ds = 0, d2s = 0;
  int64_t i = 0;
  for (; i + W <= len; i += W) {
    const Vec<A> d = load_acc(p + i) - mean;
    dv += d, d2v += d * d;
  }
  for (; i < len; ++i) {
    const A d = A(p[i]) - mean;
    ds += d, d2s += d * d;
  }
  double d1 = ds, d2 = d2s;
  for (int l = 0; l < W; ++l) d1 += dv[l], d2 += d2v[l];
  return std::max(0.0, d2 - d1 * d1 / double(len));
}

// inner > 1: item = one segment of a contiguous row (one channel).
template <typename T, bool GRAD>
void row_segments(const Job<T>& job, int64_t begin, int64_t end, Partial& part) {
  using A = Acc<T>;
  constexpr int W = Lanes<A>::width;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t row = item / job.segments_per_row, start = (item % job.segments_per_row) * kSegment;
    const int64_t c = row % job.channels, len = std::min(kSegment, job.inner - start);
    const T* p = job.x + row * job.inner + start;
    const T* q = GRAD ? job.grad + row * job.inner + start : nullptr;
    Sums<Vec<A>> lanes;
    Sums<A> tail;
    int64_t i = 0;
    for (; i + W <= len; i += W) lanes.template add<GRAD>(load_acc(p + i), GRAD ? load_acc(q + i) : Vec<A>{});
    for (; i < len; ++i) tail.template add<GRAD>(A(p[i]), GRAD ? A(q[i]) : A(0));
    Segment seg;
    seg.n = len;
    add_lane(seg, tail, 0);
    for (int l = 0; l < W; ++l) add_lane(seg, lanes, l);
    seg.m2 = deviations(p, len, A(seg.sum / double(len)));
    part.add(c, seg);
    if (job.bins > 0) {
      int64_t* h = part.hist.data() + c * job.bins;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t b = histogram_bin(A(p[j]), job.lo, job.scale, job.bins);
        if (b >= 0) ++h[b];
      }
    }
  }
}

// inner == 1 (channels innermost): item = a block of rows; lanes run across channels.
template <typename T, bool GRAD>
void row_blocks(const Job<T>& job, int64_t begin, int64_t end, Partial& part) {
  using A = Acc<T>;
  constexpr int W = Lanes<A>::width;
  const int64_t C = job.channels;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t r0 = item * job.rows_per_block, rows = std::min(job.rows_per_block, job.outer - r0);
    for (int64_t c0 = 0; c0 < C; c0 += W) {
      const int count = int(std::min<int64_t>(W, C - c0));  // lanes past `count` hold zeros, unused
      const T* p = job.x + r0 * C + c0;
      const T* q = GRAD ? job.grad + r0 * C + c0 : nullptr;
      Sums<Vec<A>> s;
      for (int64_t r = 0; r < rows; ++r) s.template add<GRAD>(load_acc(p + r * C, count), GRAD ? load_acc(q + r * C, count) : Vec<A>{});
      const Vec<A> mean = s.sum / A(rows);
      Vec<A> dv{}, d2v{};
      for (int64_t r = 0; r < rows; ++r) {
        const Vec<A> d = load_acc(p + r * C, count) - mean;
        dv += d, d2v += d * d;
      }
      for (int l = 0; l < count; ++l) {
        Segment seg;
        seg.n = rows;
        add_lane(seg, s, l);
        seg.m2 = std::max(0.0, double(d2v[l]) - double(dv[l]) * double(dv[l]) / double(rows));
        part.add(c0 + l, seg);
      }
      if (job.bins > 0) {
        for (int64_t r = 0; r < rows; ++r) {
          for (int l = 0; l < count; ++l) {
            const int64_t b = histogram_bin(A(p[r * C + l]), job.lo, job.scale, job.bins);
            if (b >= 0) ++part.hist[(c0 + l) * job.bins + b];
          }
        }
      }
    }
  }
}

template <typename T>
void run_chunk(const Job<T>& job, int64_t k) {
  const int64_t begin = k * job.items / job.chunks, end = (k + 1) * job.items / job.chunks;
  Partial& part = (*job.partials)[k];
  const bool grad = job.grad != nullptr;
  if (job.inner > 1) {
    grad ? row_segments<T, true>(job, begin, end, part) : row_segments<T, false>(job, begin, end, part);
  } else {
    grad ? row_blocks<T, true>(job, begin, end, part) : row_blocks<T, false>(job, begin, end, part);
  }
}

// The entry points the thread pool calls, cloned per instruction set (see lanes.h).
KF_CPU_CLONES void chunk_f32(const Job<float>& j, int64_t k) { run_chunk(j, k); }
KF_CPU_CLONES void chunk_f64(const Job<double>& j, int64_t k) { run_chunk(j, k); }
KF_CPU_CLONES void chunk_f16(const Job<at::Half>& j, int64_t k) { run_chunk(j, k); }
KF_CPU_CLONES void chunk_bf16(const Job<at::BFloat16>& j, int64_t k) { run_chunk(j, k); }
void chunk(const Job<float>& j, int64_t k) { chunk_f32(j, k); }
void chunk(const Job<double>& j, int64_t k) { chunk_f64(j, k); }
void chunk(const Job<at::Half>& j, int64_t k) { chunk_f16(j, k); }
void chunk(const Job<at::BFloat16>& j, int64_t k) { chunk_bf16(j, k); }

void write(const Partial& p, ChannelStatsOutputs& out, bool with_grad) {
  auto copy = [](const auto& v, const at::Tensor& t) {
    std::copy(v.begin(), v.end(), t.data_ptr<typename std::decay_t<decltype(v)>::value_type>());
  };
  copy(p.n, out.count), copy(p.sum, out.sum), copy(p.abs_sum, out.abs_sum), copy(p.m2, out.m2);
  copy(p.zeros, out.zeros), copy(p.nonpos, out.nonpos), copy(p.mn, out.min), copy(p.mx, out.max);
  copy(p.hist, out.hist);
  if (with_grad) copy(p.prod, out.prod_sum), copy(p.prod_abs, out.prod_abs_sum);
}

// x: (*) with channels along dim; grad: like x or absent -> per-channel statistics.
ChannelStatsResult channel_stats_cpu(const at::Tensor& x, int64_t dim, const c10::optional<at::Tensor>& grad,
                                     int64_t bins, double lo, double hi) {
  dim = check_channel_stats_args(x, dim, grad, bins, lo, hi);
  const bool with_grad = grad.has_value();
  const int64_t channels = x.size(dim);
  ChannelStatsOutputs out(channels, bins, with_grad, x.device());
  if (x.numel() == 0) return out.as_tuple();
  const auto order = memory_order(x);
  const at::Tensor xv = channel_view(x, dim, order);
  const at::Tensor gv = with_grad ? channel_view(*grad, dim, order) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_stats_cpu", [&] {
    using A = Acc<scalar_t>;
    Job<scalar_t> job{xv.data_ptr<scalar_t>(), with_grad ? gv.data_ptr<scalar_t>() : nullptr,
                      xv.size(0), channels, xv.size(2), bins, A(lo), A(bins > 0 ? double(bins) / (hi - lo) : 0.0),
                      0, 0, 0, 0, nullptr};
    if (job.inner > 1) {
      job.segments_per_row = (job.inner + kSegment - 1) / kSegment;
      job.items = job.outer * channels * job.segments_per_row;
    } else {
      job.rows_per_block = std::max<int64_t>(1, kBlockElems / channels);
      job.items = (job.outer + job.rows_per_block - 1) / job.rows_per_block;
    }
    // Fewer chunks when each carries large partials (many channels or bins).
    const int64_t partial_size = channels * (bins + 11);
    job.chunks = std::max<int64_t>(1, std::min({job.items, kMaxChunks, (int64_t(1) << 22) / partial_size}));
    std::vector<Partial> partials(job.chunks, Partial(channels, bins));
    job.partials = &partials;
    at::parallel_for(0, job.chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) chunk(job, k);
    });
    for (int64_t k = 1; k < job.chunks; ++k) partials[0].add(partials[k]);
    write(partials[0], out, with_grad);
  });
  return out.as_tuple();
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def("channel_stats(Tensor x, int dim, Tensor? grad=None, int bins=0, float lo=0., float hi=0.) -> "
        "(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)",
        {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) { m.impl("channel_stats", &channel_stats_cpu); }

}  // namespace kanfast
