// Launchers of the CUDA basis kernels: raw device pointers and a stream, no torch types, so
// that the .cu compiles with nvcc alone (CMake builds it on machines without a GPU).
#pragma once

#include <cuda_runtime.h>

#include "kanfast/layout.h"

namespace kanfast {
namespace cuda {

// Tables as in csrc/bspline_basis/bspline_cpu.h, on the device in the compute type TC:
// knots [num_knots][features], recips [order + 1][num_knots - 1][features].
template <typename TC>
struct DeviceKnotTables {
  const TC* knots;
  const TC* recips;
  int num_knots, order;
};

// T: storage type of x / bases (float, double, __half, __nv_bfloat16); TC: compute type.
template <typename T, typename TC>
cudaError_t launch_bspline_bases(const T* x, ElementStrides x_strides, Extents extents,
                                 DeviceKnotTables<TC> tables, T* bases, BasisStrides bases_strides,
                                 cudaStream_t stream);

// grad_x (+)= Σ_j grad_bases[.., j, ..]·dB_j/dx.
template <typename T, typename TC>
cudaError_t launch_bspline_bases_backward(const T* x, ElementStrides x_strides, Extents extents,
                                          DeviceKnotTables<TC> tables, const T* grad_bases,
                                          BasisStrides grad_strides, T* grad_x,
                                          ElementStrides grad_x_strides, bool accumulate,
                                          cudaStream_t stream);

}  // namespace cuda
}  // namespace kanfast
