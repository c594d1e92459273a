// kanfast::bspline_basis: the B-spline bases of DESIGN.md §2, and its backward.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "bspline_bases.h"

namespace kanfast {

CpuBases::CpuBases(const at::Tensor& grid, int64_t spline_order, at::ScalarType dtype)
    : num_bases_(grid.size(1) - 1 - spline_order) {
  const at::Tensor g = grid.to(at::kCPU, dtype).contiguous();
  const int num_knots = static_cast<int>(g.size(1));
  if (dtype == at::kFloat) {
    f32_ = std::make_unique<cpu::KnotTables<float>>(g.data_ptr<float>(), g.size(0), num_knots,
                                                    static_cast<int>(spline_order));
  } else {
    TORCH_CHECK(dtype == at::kDouble, "kanfast: CPU kernels compute in float32 or float64, got ", dtype);
    f64_ = std::make_unique<cpu::KnotTables<double>>(g.data_ptr<double>(), g.size(0), num_knots,
                                                     static_cast<int>(spline_order));
  }
}

namespace {

template <typename T>
T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
cpu::SiluSlot<T> silu_slot(const at::Tensor& out, const at::Tensor& grad) {
  return {data_or_null<T>(out), out.defined() ? element_strides(out) : ElementStrides{},
          data_or_null<T>(grad), grad.defined() ? element_strides(grad) : ElementStrides{}};
}

template <typename T>
void forward_as(const cpu::KnotTables<T>& tables, const at::Tensor& x, const at::Tensor& out,
                const at::Tensor& silu_out) {
  cpu::bspline_bases_cpu(x.data_ptr<T>(), element_strides(x), extents(x), tables, out.data_ptr<T>(),
                         basis_strides(out), silu_slot<T>(silu_out, {}));
}

template <typename T>
void bases_and_backward_as(const cpu::KnotTables<T>& tables, const at::Tensor& x, const at::Tensor& out,
                           const at::Tensor& grad, const at::Tensor& grad_x, bool accumulate,
                           const at::Tensor& silu_out, const at::Tensor& silu_grad) {
  cpu::bspline_bases_backward_cpu(x.data_ptr<T>(), element_strides(x), extents(x), tables, data_or_null<T>(out),
                                  out.defined() ? basis_strides(out) : BasisStrides{}, grad.data_ptr<T>(),
                                  basis_strides(grad), grad_x.data_ptr<T>(), element_strides(grad_x), accumulate,
                                  silu_slot<T>(silu_out, silu_grad));
}

}  // namespace

void CpuBases::forward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& silu_out) const {
  if (f32_) {
    forward_as(*f32_, x, out, silu_out);
  } else {
    forward_as(*f64_, x, out, silu_out);
  }
}

void CpuBases::backward(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& grad_x, bool accumulate,
                        const at::Tensor& silu_grad) const {
  bases_and_backward(x, at::Tensor(), grad, grad_x, accumulate, at::Tensor(), silu_grad);
}

void CpuBases::bases_and_backward(const at::Tensor& x, const at::Tensor& out, const at::Tensor& grad,
                                  const at::Tensor& grad_x, bool accumulate, const at::Tensor& silu_out,
                                  const at::Tensor& silu_grad) const {
  if (f32_) {
    bases_and_backward_as(*f32_, x, out, grad, grad_x, accumulate, silu_out, silu_grad);
  } else {
    bases_and_backward_as(*f64_, x, out, grad, grad_x, accumulate, silu_out, silu_grad);
  }
}

namespace {

// x: (*, features), grid: (features, num_knots) -> (*, features, num_bases)
at::Tensor bspline_basis_cpu(const at::Tensor& x, const at::Tensor& grid, int64_t spline_order) {
  check_bspline_args("bspline_basis", x, "x", x.dim() - 1, grid, spline_order);
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  const at::Tensor xc = x.to(dtype).reshape({-1, grid.size(0), 1});
  auto sizes = x.sizes().vec();
  sizes.push_back(bases.num_bases());
  at::Tensor out = at::empty(sizes, x.options().dtype(dtype));
  bases.forward(xc, out.view({-1, grid.size(0), bases.num_bases(), 1}));
  return out.to(x.scalar_type());
}

// grad_bases: (*, features, num_bases) -> grad_x: (*, features)
at::Tensor bspline_basis_backward_cpu(const at::Tensor& grad_bases, const at::Tensor& x,
                                      const at::Tensor& grid, int64_t spline_order) {
  check_bspline_args("bspline_basis_backward", x, "x", x.dim() - 1, grid, spline_order);
  auto expected = x.sizes().vec();
  expected.push_back(grid.size(1) - 1 - spline_order);
  TORCH_CHECK(grad_bases.sizes() == at::IntArrayRef(expected),
              "bspline_basis_backward: grad_bases must have shape ", at::IntArrayRef(expected),
              ", got ", grad_bases.sizes());
  const auto dtype = cpu_compute_dtype(x.scalar_type());
  const CpuBases bases(grid, spline_order, dtype);
  const at::Tensor xc = x.to(dtype).reshape({-1, grid.size(0), 1});
  const at::Tensor g = grad_bases.to(dtype).reshape({-1, grid.size(0), bases.num_bases(), 1});
  at::Tensor grad_x = at::empty_like(xc, at::MemoryFormat::Contiguous);
  bases.backward(xc, g, grad_x, /*accumulate=*/false);
  return grad_x.view(x.sizes()).to(x.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(kanfast, m) {
  m.def("bspline_basis(Tensor x, Tensor grid, int spline_order) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("bspline_basis_backward(Tensor grad_bases, Tensor x, Tensor grid, int spline_order) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}

TORCH_LIBRARY_IMPL(kanfast, CPU, m) {
  m.impl("bspline_basis", &bspline_basis_cpu);
  m.impl("bspline_basis_backward", &bspline_basis_backward_cpu);
}

}  // namespace kanfast
