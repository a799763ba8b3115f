// kernel_contract: out (n x q) += K(x, y) @ W (m x q), tiled and fused; the
// n x m kernel matrix is never held, only one kTile x kTile tile per thread.
// Threads own rows of x, so each output row has one writer and the result does
// not depend on the number of threads.  Many columns go through a
// register-blocked GEMM on each kernel tile, a few through dot products.
#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

template <typename T>
struct ContractOp {
  const ContractParams<T>& p;
  const TileOps<T>& ops;
  bool gemm;
  int64_t per = 0;
  std::vector<T> mem;
  void setup(int64_t, int threads) {
    per = gemm ? gemm_scratch(ops, kTile, kTile, p.q) : p.q * kTile;
    mem.assign(size_t(threads) * size_t(per), T(0));
  }
  void begin(int, int64_t, int64_t) {}
  void end(int, int64_t, int64_t) {}
  void tile(int t, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K) {
    const int64_t q = p.q;
    T* ex = mem.data() + int64_t(t) * per;
    if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, kTile, p.exclude_diagonal);
    if (gemm) {
      ops.contract_gemm(K, kTile, ni, nj, p.weights + j0 * q, q, q, p.out + i0 * q, q, ex);
    } else {
      for (int64_t j = 0; j < nj; ++j)
        for (int64_t c = 0; c < q; ++c) ex[c * kTile + j] = p.weights[(j0 + j) * q + c];
      ops.contract_tile(K, kTile, ni, nj, ex, kTile, q, p.out + i0 * q, q);
    }
  }
};

}  // namespace

template <typename T>
void kernel_contract(const ContractParams<T>& p) {
  if (p.x.rows == 0 || p.y.rows == 0 || p.q == 0) return;
  const TileOps<T>& ops = tile_ops<T>();
  ContractOp<T> op{p, ops, p.q >= 4};
  row_blocks(ops, p, false, op);
}

template void kernel_contract<float>(const ContractParams<float>&);
template void kernel_contract<double>(const ContractParams<double>&);

}  // namespace cpu
}  // namespace simgap
