// mmd_blocks: the unbiased MMD^2 of each block of B rows of x against the
// same block of y (Zaremba, Gretton & Blaschko 2013, the B-test).  Blocks are
// independent, so threads take whole blocks and the result does not depend on
// the number of threads.
#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

// Unbiased-style sum over one block pair, tile by tile, on the calling thread.
template <typename T>
double block_sum(const TileOps<T>& ops, const SumParams<T>& p, const double* center,
                 int64_t r0x, int64_t r0y, int64_t B, TileWork<T>& w) {
  const bool sym = p.symmetric && p.same;
  double total = 0.0;
  for (int64_t i0 = 0; i0 < B; i0 += kTile) {
    const int64_t ni = std::min(kTile, B - i0);
    bool pack_x = true;
    for (int64_t j0 = sym ? i0 : 0; j0 < B; j0 += kTile) {
      const int64_t nj = std::min(kTile, B - j0);
      const double weight = (sym && j0 != i0) ? 2.0 : 1.0;
      total += tile_sum(ops, p, center, r0x + i0, ni, r0y + j0, nj, pack_x, w, weight, nullptr);
      pack_x = false;
    }
  }
  return total;
}

}  // namespace

template <typename T>
void mmd_blocks(const BlockParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t d = p.x.cols, B = p.block;
  if (p.n_blocks == 0) return;
  const int threads = threads_for(3.0 * double(p.n_blocks) * double(B) * double(B) * double(d + 1));
  const double* center = uses_distance(p.kernel.type) ? p.center : nullptr;
  Scratch<T> scratch(threads, TileWork<T>::size(d));

  SumParams<T> xx, yy, xy;
  xx.x = xx.y = xy.x = p.x;
  yy.x = yy.y = xy.y = p.y;
  xx.kernel = yy.kernel = xy.kernel = p.kernel;
  xx.same = yy.same = true;
  xx.exclude_diagonal = yy.exclude_diagonal = true;
  xx.symmetric = yy.symmetric = true;

  const double pairs_self = double(B) * double(B - 1), pairs_cross = double(B) * double(B);
#pragma omp parallel num_threads(threads)
  {
    TileWork<T> w(scratch.slot(SIMGAP_THREAD_ID()), d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < p.n_blocks; ++b) {
      const int64_t r0 = b * B;
      const double kxx = block_sum(ops, xx, center, r0, r0, B, w);
      const double kyy = block_sum(ops, yy, center, r0, r0, B, w);
      const double kxy = block_sum(ops, xy, center, r0, r0, B, w);
      p.out[b] = kxx / pairs_self + kyy / pairs_self - 2.0 * kxy / pairs_cross;
    }
  }
}

template void mmd_blocks<float>(const BlockParams<float>&);
template void mmd_blocks<double>(const BlockParams<double>&);

}  // namespace cpu
}  // namespace simgap
