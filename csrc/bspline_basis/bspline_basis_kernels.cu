// CUDA basis kernels: one thread per element streaming the recursion of kanfast/bspline.h
// with O(K) registers, templated on the spline order. Compiled with --fmad=false so results
// match the reference bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bspline_basis_kernels.h"
#include "kanfast/bspline.h"

namespace kanfast {
namespace cuda {
namespace {

constexpr int kThreads = 128;

template <typename TC>
__device__ inline TC load_as(const float* p) { return static_cast<TC>(*p); }
template <typename TC>
__device__ inline TC load_as(const double* p) { return static_cast<TC>(*p); }
template <typename TC>
__device__ inline TC load_as(const __half* p) { return static_cast<TC>(__half2float(*p)); }
template <typename TC>
__device__ inline TC load_as(const __nv_bfloat16* p) { return static_cast<TC>(__bfloat162float(*p)); }

template <typename TC>
__device__ inline void store_from(float* p, TC v) { *p = static_cast<float>(v); }
template <typename TC>
__device__ inline void store_from(double* p, TC v) { *p = static_cast<double>(v); }
template <typename TC>
__device__ inline void store_from(__half* p, TC v) { *p = __float2half_rn(static_cast<float>(v)); }
template <typename TC>
__device__ inline void store_from(__nv_bfloat16* p, TC v) { *p = __float2bfloat16_rn(static_cast<float>(v)); }

// Element e -> (n, c, s); consecutive threads take consecutive positions, then features, so
// loads of x and of the feature-minor tables coalesce.
struct Element {
  int64_t n, c, s;
};
__device__ inline Element element_at(int64_t e, const Extents& ext) {
  const int64_t per_row = ext.features * ext.positions;
  const int64_t rest = e % per_row;
  return {e / per_row, rest / ext.positions, rest % ext.positions};
}

template <typename TC>
struct KnotAt {
  const TC* knots;
  int64_t c, features;
  __device__ TC operator()(int j) const { return knots[j * features + c]; }
};
template <typename TC>
struct RecipAt {
  const TC* recips;
  int64_t c, features;
  int num_knots;
  __device__ TC operator()(int k, int j) const {
    return recips[(int64_t(k) * (num_knots - 1) + j) * features + c];
  }
};

template <int K, typename T, typename TC>
__global__ void bspline_bases_kernel(const T* __restrict__ x, ElementStrides xs, Extents ext,
                                     DeviceKnotTables<TC> t, T* __restrict__ out, BasisStrides os) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= ext.rows * ext.features * ext.positions) return;
  const Element el = element_at(e, ext);
  const TC xv = load_as<TC>(x + el.n * xs.row + el.c * xs.feature + el.s * xs.position);
  T* o = out + el.n * os.row + el.c * os.feature + el.s * os.position;
  bspline_columns<K, false>(xv, t.num_knots, KnotAt<TC>{t.knots, el.c, ext.features},
                            RecipAt<TC>{t.recips, el.c, ext.features, t.num_knots},
                            [&](int j, TC value, TC) { store_from(o + j * os.basis, value); });
}

template <int K, typename T, typename TC>
__global__ void bspline_bases_backward_kernel(const T* __restrict__ x, ElementStrides xs, Extents ext,
                                              DeviceKnotTables<TC> t, const T* __restrict__ grad,
                                              BasisStrides gs, T* __restrict__ grad_x, ElementStrides gxs,
                                              bool accumulate) {
  const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= ext.rows * ext.features * ext.positions) return;
  const Element el = element_at(e, ext);
  const TC xv = load_as<TC>(x + el.n * xs.row + el.c * xs.feature + el.s * xs.position);
  const T* g = grad + el.n * gs.row + el.c * gs.feature + el.s * gs.position;
  TC acc = 0;
  bspline_columns<K, true>(xv, t.num_knots, KnotAt<TC>{t.knots, el.c, ext.features},
                           RecipAt<TC>{t.recips, el.c, ext.features, t.num_knots},
                           [&](int j, TC, TC deriv) { acc += load_as<TC>(g + j * gs.basis) * deriv; });
  T* gx = grad_x + el.n * gxs.row + el.c * gxs.feature + el.s * gxs.position;
  if (accumulate) acc = load_as<TC>(gx) + acc;
  store_from(gx, acc);
}

unsigned int num_blocks(const Extents& ext) {
  return static_cast<unsigned int>((ext.rows * ext.features * ext.positions + kThreads - 1) / kThreads);
}

}  // namespace

template <typename T, typename TC>
cudaError_t launch_bspline_bases(const T* x, ElementStrides x_strides, Extents extents,
                                 DeviceKnotTables<TC> tables, T* bases, BasisStrides bases_strides,
                                 cudaStream_t stream) {
  if (extents.rows * extents.features * extents.positions == 0) return cudaSuccess;
  dispatch_spline_order(tables.order, [&](auto order) {
    bspline_bases_kernel<decltype(order)::value, T, TC>
        <<<num_blocks(extents), kThreads, 0, stream>>>(x, x_strides, extents, tables, bases, bases_strides);
  });
  return cudaGetLastError();
}

template <typename T, typename TC>
cudaError_t launch_bspline_bases_backward(const T* x, ElementStrides x_strides, Extents extents,
                                          DeviceKnotTables<TC> tables, const T* grad_bases,
                                          BasisStrides grad_strides, T* grad_x,
                                          ElementStrides grad_x_strides, bool accumulate,
                                          cudaStream_t stream) {
  if (extents.rows * extents.features * extents.positions == 0) return cudaSuccess;
  dispatch_spline_order(tables.order, [&](auto order) {
    bspline_bases_backward_kernel<decltype(order)::value, T, TC><<<num_blocks(extents), kThreads, 0, stream>>>(
        x, x_strides, extents, tables, grad_bases, grad_strides, grad_x, grad_x_strides, accumulate);
  });
  return cudaGetLastError();
}

#define KF_INSTANTIATE(T, TC)                                                                       \
  template cudaError_t launch_bspline_bases<T, TC>(const T*, ElementStrides, Extents,              \
                                                   DeviceKnotTables<TC>, T*, BasisStrides,         \
                                                   cudaStream_t);                                  \
  template cudaError_t launch_bspline_bases_backward<T, TC>(const T*, ElementStrides, Extents,     \
                                                            DeviceKnotTables<TC>, const T*,        \
                                                            BasisStrides, T*, ElementStrides, bool, \
                                                            cudaStream_t);
KF_INSTANTIATE(float, float)
KF_INSTANTIATE(double, double)
KF_INSTANTIATE(__half, float)
KF_INSTANTIATE(__nv_bfloat16, float)
#undef KF_INSTANTIATE

}  // namespace cuda
}  // namespace kanfast
