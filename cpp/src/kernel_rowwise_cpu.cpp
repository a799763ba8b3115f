// kernel_rowwise: out[i] = k(x_i, y_i) for paired rows, the terms of the
// linear-time MMD statistic.  Distances are taken directly (not through the
// Gram expansion) and accumulated in float64.
#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
void kernel_rowwise(const RowwiseParams<T>& p) {
  const int64_t n = p.x.rows, d = p.x.cols;
  const int threads = threads_for(double(n) * double(d));
  const KernelParams& kp = p.kernel;
  const int64_t cx = p.x.col_stride, cy = p.y.col_stride;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) {
    const T* a = p.x.row(i);
    const T* b = p.y.row(i);
    double d2 = 0.0, g = 0.0;
    for (int64_t k = 0; k < d; ++k) {
      const double u = double(a[k * cx]), v = double(b[k * cy]);
      d2 += (u - v) * (u - v);
      g += u * v;
    }
    p.out[i] = visit_kernel(
        kp.type, [&](auto kt) { return kernel_value<decltype(kt)::value, double>(d2, g, kp); },
        [] { return 0.0; });
  }
}

template void kernel_rowwise<float>(const RowwiseParams<float>&);
template void kernel_rowwise<double>(const RowwiseParams<double>&);

}  // namespace cpu
}  // namespace simgap
