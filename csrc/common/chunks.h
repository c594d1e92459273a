// Chunk sizes for the fused ops' loops over rows (KANLinear) or images (KANConv).
#pragma once

#include <algorithm>
#include <cstdint>

namespace kanfast {

// The chunk size that splits `total` into the fewest chunks of at most `max_chunk` with the
// last one shorter than the others by less than the number of chunks: 1024 rows with room
// for 910 become 512 + 512, not 910 + a 114-row remainder whose GEMM runs far below full speed.
inline int64_t balanced_chunk(int64_t total, int64_t max_chunk) {
  max_chunk = std::max<int64_t>(1, max_chunk);
  if (total <= max_chunk) return std::max<int64_t>(1, total);
  const int64_t chunks = (total + max_chunk - 1) / max_chunk;
  return (total + chunks - 1) / chunks;
}

}  // namespace kanfast
