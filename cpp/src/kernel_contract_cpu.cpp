// kernel_contract: out (n x q) += K(x, y) @ W (m x q), tiled and fused; the
// n x m kernel matrix is never held, only one kTile x kTile tile per thread.
// Threads split the rows of x, so each output row has one writer and the
// result does not depend on the number of threads.
#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
void kernel_contract(const ContractParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols, q = p.q;
  if (n == 0 || m == 0 || q == 0) return;
  const int threads = max_threads();
  const int64_t bi = choose_row_block(n, threads, ops.mr);
  const int64_t bj = kTile;
  const int64_t nbi = ceil_div(n, bi), nbj = ceil_div(m, bj);
  const double* center = center_for(p);
  // Many columns: a register-blocked GEMM on each kernel tile; few: dot products.
  const bool gemm = q >= 4;

  // x panels + norms, y panels + norms, kernel tile, then either the
  // transposed weight tile (dot path) or the GEMM packing scratch.
  const int64_t extra = gemm ? gemm_scratch(ops, bi, bj, q) : q * bj;
  const int64_t per = bi * d + bi + bj * d + bj + bi * bj + extra;
  Scratch<T> scratch(threads, per);

#pragma omp parallel num_threads(threads)
  {
    T* xb = scratch.slot(SIMGAP_THREAD_ID());
    T* xn = xb + bi * d;
    T* yb = xn + bi;
    T* yn = yb + bj * d;
    T* K = yn + bj;
    T* ex = K + bi * bj;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < nbi; ++ib) {
      const int64_t i0 = ib * bi, ni = std::min(bi, n - i0);
      ops.pack(p.x, center, i0, ni, ops.mr, xb, xn);
      for (int64_t jb = 0; jb < nbj; ++jb) {
        const int64_t j0 = jb * bj, nj = std::min(bj, m - j0);
        ops.pack(p.y, center, j0, nj, ops.nr, yb, yn);
        compute_tile(ops, p, i0, ni, j0, nj, xb, xn, yb, yn, K, bj);
        if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, bj, p.exclude_diagonal);
        if (gemm) {
          ops.contract_gemm(K, bj, ni, nj, p.weights + j0 * q, q, q, p.out + i0 * q, q, ex);
        } else {
          for (int64_t j = 0; j < nj; ++j)
            for (int64_t c = 0; c < q; ++c) ex[c * bj + j] = p.weights[(j0 + j) * q + c];
          ops.contract_tile(K, bj, ni, nj, ex, bj, q, p.out + i0 * q, q);
        }
      }
    }
  }
}

template void kernel_contract<float>(const ContractParams<float>&);
template void kernel_contract<double>(const ContractParams<double>&);

}  // namespace cpu
}  // namespace simgap
