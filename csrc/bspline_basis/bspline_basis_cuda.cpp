// CUDA registrations of kanfast::bspline_basis(_backward) and the CudaBases used by the
// fused ops. Built only against a CUDA PyTorch; the kernels are in bspline_basis_kernels.cu.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "bspline_bases.h"
#include "bspline_basis_cuda.h"
#include "bspline_basis_kernels.h"

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
typename CudaStorage<T>::type* device_ptr(const at::Tensor& t) {
  return reinterpret_cast<typename CudaStorage<T>::type*>(t.data_ptr<T>());
}

void check_launch(cudaError_t err) { TORCH_CHECK(err == cudaSuccess, "kanfast CUDA kernel: ", cudaGetErrorString(err)); }

}  // namespace

CudaBases::CudaBases(const at::Tensor& grid, int64_t spline_order, at::ScalarType compute)
    : num_knots_(static_cast<int>(grid.size(1))), order_(static_cast<int>(spline_order)) {
  // Same arithmetic as kanfast/reference/bspline_basis.py: knot_span_reciprocals.
  const at::Tensor g = grid.to(compute);
  knots_ = g.t().contiguous();
  recips_ = at::zeros({spline_order + 1, num_knots_ - 1, g.size(0)}, g.options());
  for (int k = 1; k <= order_; ++k) {
    const at::Tensor width = g.narrow(1, k, num_knots_ - k) - g.narrow(1, 0, num_knots_ - k);
    const at::Tensor r = at::where(width > 0, at::reciprocal(width), at::zeros_like(width));
    recips_[k].narrow(0, 0, num_knots_ - k).copy_(r.t());
  }
}

void CudaBases::forward(const at::Tensor& x, const at::Tensor& out) const {
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "kanfast_bases", [&] {
    if constexpr (std::is_same_v<scalar_t, double>) {
      const cuda::DeviceKnotTables<double> t{knots_.data_ptr<double>(), recips_.data_ptr<double>(), num_knots_, order_};
      check_launch(cuda::launch_bspline_bases(device_ptr<scalar_t>(x), element_strides(x), extents(x), t,
                                              device_ptr<scalar_t>(out), basis_strides(out), stream));
    } else {
      const cuda::DeviceKnotTables<float> t{knots_.data_ptr<float>(), recips_.data_ptr<float>(), num_knots_, order_};
      check_launch(cuda::launch_bspline_bases(device_ptr<scalar_t>(x), element_strides(x), extents(x), t,
                                              device_ptr<scalar_t>(out), basis_strides(out), stream));
    }
  });
}

void CudaBases::backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& grad_x,
                         bool accumulate) const {
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "kanfast_bases_backward", [&] {
    if constexpr (std::is_same_v<scalar_t, double>) {
      const cuda::DeviceKnotTables<double> t{knots_.data_ptr<double>(), recips_.data_ptr<double>(), num_knots_, order_};
      check_launch(cuda::launch_bspline_bases_backward(
          device_ptr<scalar_t>(x), element_strides(x), extents(x), t, device_ptr<scalar_t>(grad), basis_strides(grad),
          device_ptr<scalar_t>(grad_x), element_strides(grad_x), accumulate, stream));
    } else {
      const cuda::DeviceKnotTables<float> t{knots_.data_ptr<float>(), recips_.data_ptr<float>(), num_knots_, order_};
      check_launch(cuda::launch_bspline_bases_backward(
          device_ptr<scalar_t>(x), element_strides(x), extents(x), t, device_ptr<scalar_t>(grad), basis_strides(grad),
          device_ptr<scalar_t>(grad_x), element_strides(grad_x), accumulate, stream));
    }
  });
}

namespace {

at::Tensor bspline_basis_cuda(const at::Tensor& x, const at::Tensor& grid, int64_t spline_order) {
  check_bspline_args("bspline_basis", x, "x", x.dim() - 1, grid, spline_order);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  auto sizes = x.sizes().vec();
  sizes.push_back(bases.num_bases());
  at::Tensor out = at::empty(sizes, x.options());
  bases.forward(x.reshape({-1, grid.size(0), 1}), out.view({-1, grid.size(0), bases.num_bases(), 1}));
  return out;
}

at::Tensor bspline_basis_backward_cuda(const at::Tensor& grad_bases, const at::Tensor& x, const at::Tensor& grid,
                                       int64_t spline_order) {
  check_bspline_args("bspline_basis_backward", x, "x", x.dim() - 1, grid, spline_order);
  const c10::cuda::CUDAGuard guard(x.device());
  const CudaBases bases(grid, spline_order, cuda_compute_dtype(x.scalar_type()));
  TORCH_CHECK(grad_bases.dim() == x.dim() + 1 && grad_bases.size(-1) == bases.num_bases(),
              "bspline_basis_backward: grad_bases must have shape x.shape + (", bases.num_bases(), ",), got ",
              grad_bases.sizes());
  at::Tensor grad_x = at::empty(x.sizes(), x.options());
  bases.backward(x.reshape({-1, grid.size(0), 1}),
                 grad_bases.to(x.scalar_type()).reshape({-1, grid.size(0), bases.num_bases(), 1}),
                 grad_x.view({-1, grid.size(0), 1}), /*accumulate=*/false);
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(kanfast, CUDA, m) {
  m.impl("bspline_basis", &bspline_basis_cuda);
  m.impl("bspline_basis_backward", &bspline_basis_backward_cuda);
}

}  // namespace kanfast
