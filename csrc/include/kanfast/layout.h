// How the basis kernels (CPU and CUDA) address their tensors: plain strides, no torch types.
#pragma once

#include <cstdint>

namespace kanfast {

// The elements are viewed as (rows, features, positions): each feature owns a knot vector;
// positions are the spatial sites of a conv input (1 for linear inputs). Strides in elements.
struct ElementStrides {
  int64_t row, feature, position;
};
// Basis j of element (n, c, s) lives at n*row + c*feature + j*basis + s*position.
struct BasisStrides {
  int64_t row, feature, basis, position;
};
struct Extents {
  int64_t rows, features, positions;
};

}  // namespace kanfast
