// kernel_matrix: the explicit n x m kernel matrix, for callers who ask for it.
#include <cstring>

#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

template <typename T>
struct MatrixOp {
  const MatrixParams<T>& p;
  void setup(int64_t, int) {}
  void begin(int, int64_t, int64_t) {}
  void end(int, int64_t, int64_t) {}
  void tile(int, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K) {
    if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, kTile, false);
    const int64_t m = p.y.rows;
    for (int64_t i = 0; i < ni; ++i)
      std::memcpy(p.out + (i0 + i) * m + j0, K + i * kTile, size_t(nj) * sizeof(T));
  }
};

}  // namespace

template <typename T>
void kernel_matrix(const MatrixParams<T>& p) {
  if (p.y.rows == 0) return;
  MatrixOp<T> op{p};
  row_blocks(tile_ops<T>(), p, false, op);
}

template void kernel_matrix<float>(const MatrixParams<float>&);
template void kernel_matrix<double>(const MatrixParams<double>&);

}  // namespace cpu
}  // namespace simgap
