// knn: the k nearest neighbours of every row of x among the rows of y, tile by
// tile with a running top-k per row; the n x m distance matrix is never held.
// Threads own blocks of x rows, and candidates are visited in increasing j, so
// results (ties included: the lower index wins) do not depend on the number of
// threads.
#include <cmath>
#include <limits>

#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

template <typename T>
struct KnnOp {
  const KnnParams<T>& p;
  int64_t rows = 0;
  std::vector<double> best;
  std::vector<int64_t> best_i;
  void setup(int64_t r, int threads) {
    rows = r;
    best.resize(size_t(threads) * size_t(r * p.k));
    best_i.resize(size_t(threads) * size_t(r * p.k));
  }
  double* bd(int t) { return best.data() + size_t(t) * size_t(rows * p.k); }
  int64_t* bx(int t) { return best_i.data() + size_t(t) * size_t(rows * p.k); }
  void begin(int t, int64_t, int64_t rn) {
    std::fill(bd(t), bd(t) + rn * p.k, std::numeric_limits<double>::infinity());
    std::fill(bx(t), bx(t) + rn * p.k, int64_t(-1));
  }
  void tile(int t, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K) {
    const int64_t k = p.k;
    // Rows of this tile sit at offset (i0 - block start) in the block's buffers;
    // the block start is a multiple of `rows`.
    const int64_t off = i0 - (i0 / rows) * rows;
    for (int64_t i = 0; i < ni; ++i) {
      double* rd = bd(t) + (off + i) * k;
      int64_t* ri = bx(t) + (off + i) * k;
      const T* row = K + i * kTile;
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
  void end(int t, int64_t r0, int64_t rn) {
    for (int64_t i = 0; i < rn * p.k; ++i) {
      const double v = bd(t)[i];
      p.dist[r0 * p.k + i] = std::isinf(v) ? v : std::sqrt(v);
      p.index[r0 * p.k + i] = bx(t)[i];
    }
  }
};

}  // namespace

template <typename T>
void knn(const KnnParams<T>& p) {
  KnnOp<T> op{p};
  row_blocks(tile_ops<T>(), distance_pair(p.x, p.y, p.center, p.same), /*raw=*/true, op);
}

template void knn<float>(const KnnParams<float>&);
template void knn<double>(const KnnParams<double>&);

}  // namespace cpu
}  // namespace simgap
