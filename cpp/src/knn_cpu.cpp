// knn: the k nearest neighbours of every row of x among the rows of y, tile by
// tile with a running top-(k + 8) per row from the Gram-identity distances;
// the candidates are then re-ranked by their exact float64 distances
// (exact_d2), which are the distances returned.  The n x m distance matrix is
// never held.  Threads own blocks of x rows, and candidates are visited in
// increasing j, so results (ties included: the lower index wins) do not
// depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

// Candidates kept per row beyond k by the Gram-identity pass, then re-ranked
// by exact distances (as _cuda_ops._KNN_SLACK on the GPU).
constexpr int64_t kKnnSlack = 8;

template <typename T>
struct KnnOp {
  const KnnParams<T>& p;
  int64_t kc = 1;  // candidates kept per row
  int64_t rows = 0;
  std::vector<double> best;
  std::vector<int64_t> best_i;
  void setup(int64_t r, int threads) {
    const int64_t avail = p.y.rows - (p.exclude_self ? 1 : 0);
    kc = std::max(p.k, std::min(p.k + kKnnSlack, avail));
    rows = r;
    best.resize(size_t(threads) * size_t(r * kc));
    best_i.resize(size_t(threads) * size_t(r * kc));
  }
  double* bd(int t) { return best.data() + size_t(t) * size_t(rows * kc); }
  int64_t* bx(int t) { return best_i.data() + size_t(t) * size_t(rows * kc); }
  void begin(int t, int64_t, int64_t rn) {
    std::fill(bd(t), bd(t) + rn * kc, std::numeric_limits<double>::infinity());
    std::fill(bx(t), bx(t) + rn * kc, int64_t(-1));
  }
  void tile(int t, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K) {
    // Rows of this tile sit at offset (i0 - block start) in the block's buffers;
    // the block start is a multiple of `rows`.
    const int64_t off = i0 - (i0 / rows) * rows;
    for (int64_t i = 0; i < ni; ++i) {
      double* rd = bd(t) + (off + i) * kc;
      int64_t* ri = bx(t) + (off + i) * kc;
      const T* row = K + i * kTile;
      for (int64_t j = 0; j < nj; ++j) {
        const double v = double(row[j]);
        if (!(v < rd[kc - 1])) continue;
        const int64_t gj = j0 + j;
        if (p.exclude_self && gj == i0 + i) continue;
        int64_t pos = kc - 1;
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
  // The candidates' exact float64 distances (exact_d2), in (distance, index)
  // order; the first k are the result.
  void end(int t, int64_t r0, int64_t rn) {
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::pair<double, int64_t>> c(static_cast<size_t>(kc));
    for (int64_t i = 0; i < rn; ++i) {
      const int64_t* ri = bx(t) + i * kc;
      int64_t nc = 0;
      for (int64_t s = 0; s < kc; ++s)
        if (ri[s] >= 0) c[size_t(nc++)] = {exact_d2(p.x, r0 + i, p.y, ri[s]), ri[s]};
      std::sort(c.begin(), c.begin() + nc);
      for (int64_t s = 0; s < p.k; ++s) {
        const bool ok = s < nc;
        p.dist[(r0 + i) * p.k + s] = ok ? std::sqrt(c[size_t(s)].first) : inf;
        p.index[(r0 + i) * p.k + s] = ok ? c[size_t(s)].second : int64_t(-1);
      }
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
