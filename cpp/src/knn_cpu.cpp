// knn: the k nearest neighbours of every row of x among the rows of y, tile by
// tile with a running top-k per row; the n x m distance matrix is never held.
// Threads own blocks of x rows, and candidates are visited in increasing j, so
// results (ties included) do not depend on the number of threads.
#include <cmath>
#include <limits>

#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
void knn(const KnnParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols, k = p.k;
  if (n == 0) return;
  const int threads = max_threads();
  const int64_t bi = choose_row_block(n, threads, ops.mr);
  const int64_t bj = kTile;
  const int64_t nbi = ceil_div(n, bi), nbj = ceil_div(m, bj);
  PairParams<T> pp;
  pp.x = p.x;
  pp.y = p.y;
  pp.center = p.center;
  pp.kernel.type = KernelType::Energy;  // any distance kernel: only the raw d2 tile is used
  pp.same = p.same;
  const int64_t per = bi * d + bi + bj * d + bj + bi * bj;
  Scratch<T> scratch(threads, per);
  std::vector<double> best(size_t(threads) * size_t(bi * k));
  std::vector<int64_t> best_i(size_t(threads) * size_t(bi * k));
  const double inf = std::numeric_limits<double>::infinity();

#pragma omp parallel num_threads(threads)
  {
    const int t = SIMGAP_THREAD_ID();
    T* xb = scratch.slot(t);
    T* xn = xb + bi * d;
    T* yb = xn + bi;
    T* yn = yb + bj * d;
    T* K = yn + bj;
    double* bd = best.data() + size_t(t) * size_t(bi * k);
    int64_t* bx = best_i.data() + size_t(t) * size_t(bi * k);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < nbi; ++ib) {
      const int64_t i0 = ib * bi, ni = std::min(bi, n - i0);
      std::fill(bd, bd + ni * k, inf);
      std::fill(bx, bx + ni * k, int64_t(-1));
      ops.pack(p.x, p.center, i0, ni, ops.mr, xb, xn);
      for (int64_t jb = 0; jb < nbj; ++jb) {
        const int64_t j0 = jb * bj, nj = std::min(bj, m - j0);
        ops.pack(p.y, p.center, j0, nj, ops.nr, yb, yn);
        compute_tile(ops, pp, i0, ni, j0, nj, xb, xn, yb, yn, K, bj, /*raw=*/true);
        for (int64_t i = 0; i < ni; ++i) {
          double* rd = bd + i * k;
          int64_t* ri = bx + i * k;
          const T* row = K + i * bj;
          for (int64_t j = 0; j < nj; ++j) {
            const double v = double(row[j]);
            if (!(v < rd[k - 1])) continue;
            const int64_t gj = j0 + j;
            if (p.exclude_self && gj == i0 + i) continue;
            int64_t pos = k - 1;
            while (pos > 0 && rd[pos - 1] > v) {
              rd[pos] = rd[pos - 1];
              ri[pos] = ri[pos - 1];
              --pos;
            }
            rd[pos] = v;
            ri[pos] = gj;
          }
        }
      }
      for (int64_t i = 0; i < ni; ++i)
        for (int64_t c = 0; c < k; ++c) {
          const double v = bd[i * k + c];
          p.dist[(i0 + i) * k + c] = std::isinf(v) ? v : std::sqrt(v);
          p.index[(i0 + i) * k + c] = bx[i * k + c];
        }
    }
  }
}

template void knn<float>(const KnnParams<float>&);
template void knn<double>(const KnnParams<double>&);

}  // namespace cpu
}  // namespace simgap
