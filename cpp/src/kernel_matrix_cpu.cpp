// kernel_matrix: the explicit n x m kernel matrix, for callers who ask for it.
#include <cstring>

#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
void kernel_matrix(const MatrixParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  if (n == 0 || m == 0) return;
  const int threads = max_threads();
  const int64_t bi = choose_row_block(n, threads, ops.mr);
  const int64_t bj = kTile;
  const int64_t nbi = ceil_div(n, bi), nbj = ceil_div(m, bj);
  const double* center = center_for(p);
  const int64_t per = bi * d + bi + bj * d + bj + bi * bj;
  Scratch<T> scratch(threads, per);

#pragma omp parallel num_threads(threads)
  {
    T* xb = scratch.slot(SIMGAP_THREAD_ID());
    T* xn = xb + bi * d;
    T* yb = xn + bi;
    T* yn = yb + bj * d;
    T* K = yn + bj;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < nbi; ++ib) {
      const int64_t i0 = ib * bi, ni = std::min(bi, n - i0);
      ops.pack(p.x, center, i0, ni, ops.mr, xb, xn);
      for (int64_t jb = 0; jb < nbj; ++jb) {
        const int64_t j0 = jb * bj, nj = std::min(bj, m - j0);
        ops.pack(p.y, center, j0, nj, ops.nr, yb, yn);
        compute_tile(ops, p, i0, ni, j0, nj, xb, xn, yb, yn, K, bj);
        if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, bj, false);
        for (int64_t i = 0; i < ni; ++i)
          std::memcpy(p.out + (i0 + i) * m + j0, K + i * bj, size_t(nj) * sizeof(T));
      }
    }
  }
}

template void kernel_matrix<float>(const MatrixParams<float>&);
template void kernel_matrix<double>(const MatrixParams<double>&);

}  // namespace cpu
}  // namespace simgap
