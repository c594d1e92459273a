// Unit test of the chunk sizes of the fused ops' loops (csrc/common/chunks.h). No torch.
#include <cstdio>

#include "../common/chunks.h"

int main() {
  int failures = 0;
  for (long total = 0; total <= 2100; ++total) {
    for (long max_chunk = 1; max_chunk <= 1100; max_chunk += (max_chunk < 40 ? 1 : 37)) {
      const long chunk = kanfast::balanced_chunk(total, max_chunk);
      const long fewest = total == 0 ? 1 : (total + max_chunk - 1) / max_chunk;
      const long chunks = total == 0 ? 1 : (total + chunk - 1) / chunk;  // as the loops step
      const long last = total - (chunks - 1) * chunk;
      const bool ok = chunk >= 1 && chunk <= max_chunk && chunks == fewest && (total == 0 || last > chunk - chunks);
      if (!ok) {
        ++failures;
        std::printf("FAIL total %ld max %ld: chunk %ld, %ld chunks, last %ld\n", total, max_chunk, chunk, chunks, last);
      }
    }
  }
  if (kanfast::balanced_chunk(1024, 910) != 512) ++failures, std::printf("FAIL 1024 rows / 910\n");
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
