// simgap._cuda: the CUDA module, built only when nvcc is found.  It links the
// CUDA runtime statically, so it imports on machines without a GPU; its
// functions report "no device" instead of failing at import.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_table.h"
#include "simgap/cuda_ops.h"
#include "simgap/kernel_args.h"

namespace py = pybind11;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error: the next call must not report it
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
  }
}

// Makes `device` current for the call and restores the previous device after.
// This module links its own (static) CUDA runtime, but the current context is
// per thread in the driver: without the restore, a call on a tensor of
// another GPU would move torch's current device behind its back.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&old_), "cudaGetDevice");
    if (old_ != device) {
      check(cudaSetDevice(device), "cudaSetDevice");
      restore_ = true;
    }
  }
  ~DeviceGuard() {
    if (restore_) (void)cudaSetDevice(old_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int old_ = 0;
  bool restore_ = false;
};

// Evaluate the kernel elementwise on device buffers given as integer
// addresses (torch's data_ptr()), on the given device and stream.
void kernel_values(std::uintptr_t d2, std::uintptr_t g, std::uintptr_t out, int64_t n,
                   bool is_double, int kernel, std::vector<double> scales, double gamma,
                   double coef0, int degree, int device, std::uintptr_t stream) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  if (is_double)
    check(simgap::cuda::kernel_values<double>(kp, reinterpret_cast<const double*>(d2),
                                              reinterpret_cast<const double*>(g),
                                              reinterpret_cast<double*>(out), n, s),
          "kernel_values");
  else
    check(simgap::cuda::kernel_values<float>(kp, reinterpret_cast<const float*>(d2),
                                             reinterpret_cast<const float*>(g),
                                             reinterpret_cast<float*>(out), n, s),
          "kernel_values");
}

template <typename T>
simgap::MatrixView<T> device_view(std::uintptr_t ptr, int64_t rows, int64_t cols) {
  simgap::MatrixView<T> v;
  v.ptr = reinterpret_cast<const T*>(ptr);
  v.rows = rows;
  v.cols = cols;
  v.row_stride = cols;
  v.col_stride = 1;
  return v;
}

// The pieces every tiled call shares: views, centre, kernel, and the row norms
// (computed into the caller's float64 buffers on the caller's stream).
template <typename T, typename P>
void prepare(P& p, std::uintptr_t x, int64_t n, std::uintptr_t y, int64_t m, int64_t d,
             std::uintptr_t center, const simgap::KernelParams& kp, bool same, std::uintptr_t xn,
             std::uintptr_t yn, cudaStream_t s) {
  // This module links its own (static) CUDA runtime, whose current device is
  // not torch's: the callers set the device passed from Python first.
  p.x = device_view<T>(x, n, d);
  p.y = device_view<T>(y, m, d);
  // As on the CPU: dot-product kernels (polynomial, linear) are not centred.
  p.center = (center && simgap::uses_distance(kp.type)) ? reinterpret_cast<const double*>(center)
                                                         : nullptr;
  p.kernel = kp;
  p.same = same;
  check(simgap::cuda::row_norms<T>(p.x, p.center, reinterpret_cast<double*>(xn), s), "row_norms(x)");
  check(simgap::cuda::row_norms<T>(p.y, p.center, reinterpret_cast<double*>(yn), s), "row_norms(y)");
}

// out (n x q, float64) += K(x, y) @ w (m x q, dtype of x); all device addresses.
void kernel_contract(std::uintptr_t x, int64_t n, std::uintptr_t y, int64_t m, int64_t d,
                     std::uintptr_t w, int64_t q, std::uintptr_t out, std::uintptr_t xn,
                     std::uintptr_t yn, std::uintptr_t center, bool is_double, int kernel,
                     std::vector<double> scales, double gamma, double coef0, int degree, bool same,
                     bool exclude, int device, std::uintptr_t stream, std::uintptr_t upper) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  if (upper != 0 && (!same || n != m))
    throw std::invalid_argument("upper: symmetric sums need x to be y");
  if (n == 0 || m == 0 || q == 0) return;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    simgap::ContractParams<T> p;
    prepare<T>(p, x, n, y, m, d, center, kp, same, xn, yn, s);
    p.weights = reinterpret_cast<const T*>(w);
    p.q = q;
    p.out = reinterpret_cast<double*>(out);
    p.upper = reinterpret_cast<double*>(upper);
    p.exclude_diagonal = exclude;
    check(simgap::cuda::kernel_contract<T>(p, reinterpret_cast<const double*>(xn),
                                           reinterpret_cast<const double*>(yn), s),
          "kernel_contract");
  };
  if (is_double) run(double{});
  else run(float{});
}

// The fused tensor-core contraction: x, y (n x d, m x d) centred and rounded
// (float32 exact in tf32, or bf16), xn / yn their float64 squared norms,
// w (m x q, float32); out (n x q, float64) += K(x, y) @ w.
void contract_tc(std::uintptr_t x, int64_t n, std::uintptr_t y, int64_t m, int64_t d, bool bf16,
                 std::uintptr_t xn, std::uintptr_t yn, std::uintptr_t w, int64_t q,
                 std::uintptr_t out, std::uintptr_t upper, int kernel, std::vector<double> scales,
                 double gamma, double coef0, int degree, bool same, bool exclude, int device,
                 std::uintptr_t stream) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  if (n < 0 || m < 0 || d < 1 || q < 0)
    throw std::invalid_argument("contract_tc: sizes must be n, m, q >= 0 and d >= 1");
  if (upper != 0 && (!same || n != m))
    throw std::invalid_argument("upper: symmetric sums need x to be y");
  if (exclude && !same) throw std::invalid_argument("exclude: needs x to be y");
  if (n == 0 || m == 0 || q == 0) return;
  simgap::cuda::TcContractParams p;
  p.x = reinterpret_cast<const void*>(x);
  p.y = reinterpret_cast<const void*>(y);
  p.n = n;
  p.m = m;
  p.d = d;
  p.bf16 = bf16;
  p.xnorms = reinterpret_cast<const double*>(xn);
  p.ynorms = reinterpret_cast<const double*>(yn);
  p.weights = reinterpret_cast<const float*>(w);
  p.q = q;
  p.out = reinterpret_cast<double*>(out);
  p.upper = reinterpret_cast<double*>(upper);
  p.kernel = kp;
  p.same = same;
  p.exclude_diagonal = exclude;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  check(simgap::cuda::contract_tc(p, s), "contract_tc");
}

// out (n x m, dtype of x) = K(x, y); all device addresses.
void kernel_matrix(std::uintptr_t x, int64_t n, std::uintptr_t y, int64_t m, int64_t d,
                   std::uintptr_t out, std::uintptr_t xn, std::uintptr_t yn, std::uintptr_t center,
                   bool is_double, int kernel, std::vector<double> scales, double gamma,
                   double coef0, int degree, bool same, int device, std::uintptr_t stream) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  if (n == 0 || m == 0) return;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    simgap::MatrixParams<T> p;
    prepare<T>(p, x, n, y, m, d, center, kp, same, xn, yn, s);
    p.out = reinterpret_cast<T*>(out);
    check(simgap::cuda::kernel_matrix<T>(p, reinterpret_cast<const double*>(xn),
                                         reinterpret_cast<const double*>(yn), s),
          "kernel_matrix");
  };
  if (is_double) run(double{});
  else run(float{});
}

// The Gram tile and its rows from the Python layer's arguments (device addresses).
template <typename T>
void set_tile(simgap::cuda::GramTile<T>& p, std::uintptr_t gram, int64_t ld, int64_t rows,
              int64_t cols, int64_t row0, int64_t col0, std::uintptr_t xn, std::uintptr_t yn,
              std::uintptr_t x, std::uintptr_t y, int64_t d) {
  p.gram = reinterpret_cast<const T*>(gram);
  p.ld_gram = ld;
  p.rows = rows;
  p.cols = cols;
  p.row0 = row0;
  p.col0 = col0;
  p.xnorms = reinterpret_cast<const double*>(xn);
  p.ynorms = reinterpret_cast<const double*>(yn);
  p.x = reinterpret_cast<const T*>(x);
  p.y = reinterpret_cast<const T*>(y);
  p.d = d;
}

// The kernel epilogues' tile description.
template <typename T>
simgap::cuda::GramTileParams<T> gram_tile(std::uintptr_t gram, int64_t ld, int64_t rows,
                                          int64_t cols, int64_t row0, int64_t col0,
                                          std::uintptr_t xn, std::uintptr_t yn, std::uintptr_t x,
                                          std::uintptr_t y, int64_t d,
                                          const simgap::KernelParams& kp, bool same,
                                          bool exclude) {
  simgap::cuda::GramTileParams<T> p;
  set_tile<T>(p, gram, ld, rows, cols, row0, col0, xn, yn, x, y, d);
  p.kernel = kp;
  p.same = same;
  p.exclude_diagonal = exclude;
  return p;
}

// Kernel values of a Gram tile (gram: float32 or float64 by is_double; out:
// float64 when out_double, else the type of gram), all device addresses.
void gram_kernel_values(std::uintptr_t gram, int64_t ld, int64_t rows, int64_t cols,
                        int64_t row0, int64_t col0, std::uintptr_t xn, std::uintptr_t yn,
                        std::uintptr_t x, std::uintptr_t y, int64_t d, std::uintptr_t out,
                        int64_t ld_out, bool is_double, bool out_double, int kernel,
                        std::vector<double> scales, double gamma, double coef0, int degree,
                        bool same, bool exclude, int device, std::uintptr_t stream) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  if (is_double && !out_double) throw std::invalid_argument("out: a float64 Gram tile needs a float64 output");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  if (is_double) {
    auto p = gram_tile<double>(gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, kp, same, exclude);
    check(simgap::cuda::gram_kernel_values<double, double>(p, reinterpret_cast<double*>(out), ld_out, s),
          "gram_kernel_values");
  } else {
    auto p = gram_tile<float>(gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, kp, same, exclude);
    if (out_double)
      check(simgap::cuda::gram_kernel_values<float, double>(p, reinterpret_cast<double*>(out), ld_out, s),
            "gram_kernel_values");
    else
      check(simgap::cuda::gram_kernel_values<float, float>(p, reinterpret_cast<float*>(out), ld_out, s),
            "gram_kernel_values");
  }
}

// out (n x q, float64) += k(G) @ w for one Gram tile; w has the type of gram.
void gram_contract(std::uintptr_t gram, int64_t ld, int64_t rows, int64_t cols, int64_t row0,
                   int64_t col0, std::uintptr_t xn, std::uintptr_t yn, std::uintptr_t x,
                   std::uintptr_t y, int64_t d, std::uintptr_t w, int64_t q, std::uintptr_t out,
                   bool is_double, int kernel, std::vector<double> scales, double gamma,
                   double coef0, int degree, bool same, bool exclude, int device,
                   std::uintptr_t stream) {
  const simgap::KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  if (q < 1 || q > simgap::cuda::kGramContractMaxColumns)
    throw std::invalid_argument("q: gram_contract takes between 1 and 8 weight columns");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    auto p = gram_tile<T>(gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, kp, same, exclude);
    check(simgap::cuda::gram_contract<T>(p, reinterpret_cast<const T*>(w), q,
                                         reinterpret_cast<double*>(out), s),
          "gram_contract");
  };
  if (is_double) run(double{});
  else run(float{});
}

// The k-NN ball statistics of one Gram tile (gram: float32 or float64 by
// is_double; x, y: the original rows of that type; norms, radii, radii2,
// max_ratio: float64; count: int64), all device addresses.
void gram_radius(std::uintptr_t gram, int64_t ld, int64_t rows, int64_t cols, int64_t row0,
                 int64_t col0, std::uintptr_t xn, std::uintptr_t yn, std::uintptr_t x,
                 std::uintptr_t y, int64_t d, std::uintptr_t radii, std::uintptr_t radii2,
                 double band, std::uintptr_t count, std::uintptr_t max_ratio, bool is_double,
                 int device, std::uintptr_t stream) {
  if (rows < 0 || cols < 0 || row0 < 0 || col0 < 0 || d < 1 || ld < cols)
    throw std::invalid_argument("gram_radius: bad tile shape");
  if (!(band >= 0.0)) throw std::invalid_argument("band: must be >= 0");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    simgap::cuda::GramRadiusParams<T> p;
    set_tile<T>(p, gram, ld, rows, cols, row0, col0, xn, yn, x, y, d);
    p.radii = reinterpret_cast<const double*>(radii);
    p.radii2 = reinterpret_cast<const double*>(radii2);
    p.band = band;
    p.count = reinterpret_cast<int64_t*>(count);
    p.max_ratio = reinterpret_cast<double*>(max_ratio);
    check(simgap::cuda::gram_radius<T>(p, s), "gram_radius");
  };
  if (is_double) run(double{});
  else run(float{});
}

// Exact float64 distances of k-NN candidates (cand: int64 rows x c, indices
// into y; out: float64 rows x c), all device addresses.
void candidate_distances(std::uintptr_t x, int64_t row0, int64_t rows, std::uintptr_t y,
                         int64_t m, int64_t d, std::uintptr_t cand, int64_t c, std::uintptr_t out,
                         bool is_double, int device, std::uintptr_t stream) {
  if (row0 < 0 || rows < 0 || m < 0 || d < 1 || c < 0)
    throw std::invalid_argument("candidate_distances: bad shape");
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    check(simgap::cuda::candidate_distances<T>(
              reinterpret_cast<const T*>(x), row0, rows, reinterpret_cast<const T*>(y), m, d,
              reinterpret_cast<const int64_t*>(cand), c, reinterpret_cast<double*>(out), s),
          "candidate_distances");
  };
  if (is_double) run(double{});
  else run(float{});
}

// Squared norms (float64) of the rows of a contiguous device matrix.
void row_norms(std::uintptr_t x, int64_t n, int64_t d, std::uintptr_t out, bool is_double,
               int device, std::uintptr_t stream) {
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  if (is_double)
    check(simgap::cuda::row_norms<double>(device_view<double>(x, n, d), nullptr,
                                          reinterpret_cast<double*>(out), s),
          "row_norms");
  else
    check(simgap::cuda::row_norms<float>(device_view<float>(x, n, d), nullptr,
                                         reinterpret_cast<double*>(out), s),
          "row_norms");
}

std::size_t sort_rows_temp_bytes(int64_t length, int64_t rows, bool is_double, int device) {
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  std::size_t bytes = 0;
  check(is_double ? simgap::cuda::sort_rows_temp_bytes<double>(length, rows, &bytes)
                  : simgap::cuda::sort_rows_temp_bytes<float>(length, rows, &bytes),
        "sort_rows_temp_bytes (CUB size query)");
  return bytes;
}

// Sort each contiguous row of `inp` (rows x length) into `out` with CUB.
void sort_rows(std::uintptr_t inp, std::uintptr_t out, int64_t length, int64_t rows,
               std::uintptr_t temp, std::size_t temp_bytes, bool is_double, int device,
               std::uintptr_t stream) {
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  void* t = reinterpret_cast<void*>(temp);
  if (is_double)
    check(simgap::cuda::sort_rows<double>(reinterpret_cast<const double*>(inp),
                                          reinterpret_cast<double*>(out), length, rows, t,
                                          temp_bytes, s),
          "sort_rows (cub radix sort)");
  else
    check(simgap::cuda::sort_rows<float>(reinterpret_cast<const float*>(inp),
                                         reinterpret_cast<float*>(out), length, rows, t, temp_bytes,
                                         s),
          "sort_rows (cub radix sort)");
}

// out[l] += W_p^p between sorted rows (cu / cv: cumulative weights or 0).
void wasserstein_1d(std::uintptr_t u, int64_t n, std::uintptr_t cu, std::uintptr_t v, int64_t m,
                    std::uintptr_t cv, int64_t rows, double p, std::uintptr_t out, bool is_double,
                    int device, std::uintptr_t stream) {
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
  DeviceGuard guard(device);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    check(simgap::cuda::wasserstein_1d<T>(reinterpret_cast<const T*>(u), n,
                                          reinterpret_cast<const double*>(cu),
                                          reinterpret_cast<const T*>(v), m,
                                          reinterpret_cast<const double*>(cv), rows, p,
                                          reinterpret_cast<double*>(out), s),
          "wasserstein_1d");
  };
  if (is_double) run(double{});
  else run(float{});
}

}  // namespace

// The docstrings' shared lines.  Every array argument is a device address
// (torch's data_ptr()); device is the CUDA device index the call runs on and
// stream the address of the cudaStream_t it is queued on (0: the default).
#define SIMGAP_DOC_DEVICE "  device, stream: the CUDA device index and the cudaStream_t address.\n"
#define SIMGAP_DOC_KERNEL \
  "  kernel, scales, gamma, coef0, degree: the kernel (a kernel_types code; its per-bandwidth\n" \
  "    scales, simgap::KernelParams in simgap/common.h; polynomial options).\n"
#define SIMGAP_DOC_TILE \
  "  gram, ld, rows, cols: the Gram tile G (rows x cols, leading dimension ld), float64 when\n" \
  "    is_double, else float32, of the centred rows [row0, row0 + rows) of x and\n" \
  "    [col0, col0 + cols) of y.\n" \
  "  row0, col0: global indices of the tile's first x and y rows.\n" \
  "  xn, yn: float64 squared norms of the centred rows of x and y (global indexing).\n" \
  "  x, y, d: the original rows (contiguous, d values each, global indexing), read for the\n" \
  "    pairs recomputed exactly; 0 skips that (reduced precisions).\n"
#define SIMGAP_DOC_FUSED \
  "  x, n, y, m, d: the rows of x (n x d) and y (m x d), contiguous, float64 when is_double,\n" \
  "    else float32.\n" \
  "  xn, yn: float64 buffers of n and m values that receive the squared norms of the\n" \
  "    centred rows.\n" \
  "  center: float64 (d), subtracted from every row for distance kernels, or 0.\n"

PYBIND11_MODULE(_cuda, m) {
  m.doc() =
      "simgap CUDA kernels (private: use the functions in the simgap package).\n\n"
      "Array arguments are device addresses (torch's data_ptr()).  A function of more than\n"
      "four arguments takes them by the names below only (keyword-only).";
  m.def("device_count", &simgap::cuda::device_count,
        "Number of visible CUDA devices (0 without a driver or a GPU).");
  m.def("runtime_version", &simgap::cuda::runtime_version,
        "The CUDA runtime version this module was built with (e.g. 13000).");
  m.def("driver_version", &simgap::cuda::driver_version,
        "The installed driver's CUDA version (0 when there is no driver).");
  simgap::export_kernel_table(m);
  m.attr("gram_contract_max_columns") = simgap::cuda::kGramContractMaxColumns;

  m.def("kernel_contract", &kernel_contract,
        "out (n x q, float64) += K(x, y) @ w, the fused route (cuda/src/kernel_contract.cu;\n"
        "simgap::ContractParams).\n\n"
        SIMGAP_DOC_FUSED
        "  w, q: weights (m x q, the type of x).\n"
        "  out: float64 (n x q), accumulated.\n"
        "  is_double: float64 rows (else float32).\n"
        SIMGAP_DOC_KERNEL
        "  same: x is y (the diagonal is k(0) exactly).\n"
        "  exclude: the diagonal counts as 0 (needs same).\n"
        SIMGAP_DOC_DEVICE
        "  upper: for symmetric sums (same, n == m), float64 (n x q) that receives the tiles\n"
        "    above the diagonal, those below being skipped (w' K w = w' out + 2 w' upper); 0: off.",
        py::kw_only(), py::arg("x"), py::arg("n"), py::arg("y"), py::arg("m"), py::arg("d"),
        py::arg("w"), py::arg("q"), py::arg("out"), py::arg("xn"), py::arg("yn"), py::arg("center"),
        py::arg("is_double"), py::arg("kernel"), py::arg("scales"), py::arg("gamma"),
        py::arg("coef0"), py::arg("degree"), py::arg("same"), py::arg("exclude"), py::arg("device"),
        py::arg("stream"), py::arg("upper") = 0);
  m.def("contract_tc", &contract_tc,
        "out (n x q, float64) += K(x, y) @ w, the fused tensor-core route\n"
        "(cuda/src/kernel_contract_tc.cu; simgap::cuda::TcContractParams).  Compute\n"
        "capability 8.0 or newer.\n\n"
        "  x, n, y, m, d: the centred rows (n x d, m x d), rounded to the precision: float32\n"
        "    values exact in tf32, or bf16.\n"
        "  bf16: the rows are bf16 (else float32).\n"
        "  xn, yn: float64 squared norms of the rounded rows.\n"
        "  w, q: float32 weights (m x q).\n"
        "  out: float64 (n x q), accumulated.\n"
        "  upper: as kernel_contract's (same, n == m), or 0.\n"
        SIMGAP_DOC_KERNEL
        "  same, exclude: as kernel_contract's.\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("x"), py::arg("n"), py::arg("y"), py::arg("m"), py::arg("d"),
        py::arg("bf16"), py::arg("xn"), py::arg("yn"), py::arg("w"), py::arg("q"), py::arg("out"),
        py::arg("upper"), py::arg("kernel"), py::arg("scales"), py::arg("gamma"), py::arg("coef0"),
        py::arg("degree"), py::arg("same"), py::arg("exclude"), py::arg("device"),
        py::arg("stream"));
  m.def("kernel_matrix", &kernel_matrix,
        "out (n x m, the type of x) = K(x, y), the fused route (cuda/src/kernel_matrix.cu;\n"
        "simgap::MatrixParams).\n\n"
        SIMGAP_DOC_FUSED
        "  out: n x m, the type of x.\n"
        "  is_double: float64 rows (else float32).\n"
        SIMGAP_DOC_KERNEL
        "  same: x is y (the diagonal is k(0) exactly).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("x"), py::arg("n"), py::arg("y"), py::arg("m"), py::arg("d"),
        py::arg("out"), py::arg("xn"), py::arg("yn"), py::arg("center"), py::arg("is_double"),
        py::arg("kernel"), py::arg("scales"), py::arg("gamma"), py::arg("coef0"), py::arg("degree"),
        py::arg("same"), py::arg("device"), py::arg("stream"));
  m.def("kernel_values", &kernel_values,
        "out[i] = k from d2[i] (squared distance, clamped at 0) and g[i] (inner product), the\n"
        "device half of kernel_rowwise (cuda/src/kernel_rowwise.cu).\n\n"
        "  d2, g, out, n: n values each, float64 when is_double, else float32.\n"
        "  is_double: float64 values (else float32).\n"
        SIMGAP_DOC_KERNEL
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("d2"), py::arg("g"), py::arg("out"), py::arg("n"),
        py::arg("is_double"), py::arg("kernel"), py::arg("scales"), py::arg("gamma"),
        py::arg("coef0"), py::arg("degree"), py::arg("device"), py::arg("stream"));
  m.def("gram_kernel_values", &gram_kernel_values,
        "out = k(G) for one Gram tile, the GEMM route of kernel_matrix\n"
        "(cuda/src/kernel_matrix_gemm.cu; simgap::cuda::GramTileParams).\n\n"
        SIMGAP_DOC_TILE
        "  out, ld_out: rows x cols values, leading dimension ld_out (may be gram itself when\n"
        "    of its type), float64 when out_double, else float32.\n"
        "  is_double: the type of gram, x and y (float64, else float32).\n"
        "  out_double: float64 out (needed when is_double).\n"
        SIMGAP_DOC_KERNEL
        "  same: x is y (the global diagonal is k(0) exactly).\n"
        "  exclude: the global diagonal counts as 0 (needs same).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("gram"), py::arg("ld"), py::arg("rows"), py::arg("cols"),
        py::arg("row0"), py::arg("col0"), py::arg("xn"), py::arg("yn"), py::arg("x"), py::arg("y"),
        py::arg("d"), py::arg("out"), py::arg("ld_out"), py::arg("is_double"),
        py::arg("out_double"), py::arg("kernel"), py::arg("scales"), py::arg("gamma"),
        py::arg("coef0"), py::arg("degree"), py::arg("same"), py::arg("exclude"), py::arg("device"),
        py::arg("stream"));
  m.def("gram_contract", &gram_contract,
        "out[(row0 + i) * q + c] += sum_j k(G_ij) w[(col0 + j) * q + c] in float64 for one Gram\n"
        "tile, the GEMM route of kernel_contract (cuda/src/kernel_contract_gemm.cu;\n"
        "simgap::cuda::GramTileParams).  Tiles queued one after another on a stream accumulate\n"
        "without atomics.\n\n"
        SIMGAP_DOC_TILE
        "  w, q: weights (m x q, global rows, the type of gram), 1 <= q <=\n"
        "    gram_contract_max_columns.\n"
        "  out: float64 (n x q, global rows), accumulated.\n"
        "  is_double: the type of gram, x, y and w (float64, else float32).\n"
        SIMGAP_DOC_KERNEL
        "  same, exclude: as gram_kernel_values's.\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("gram"), py::arg("ld"), py::arg("rows"), py::arg("cols"),
        py::arg("row0"), py::arg("col0"), py::arg("xn"), py::arg("yn"), py::arg("x"), py::arg("y"),
        py::arg("d"), py::arg("w"), py::arg("q"), py::arg("out"), py::arg("is_double"),
        py::arg("kernel"), py::arg("scales"), py::arg("gamma"), py::arg("coef0"), py::arg("degree"),
        py::arg("same"), py::arg("exclude"), py::arg("device"), py::arg("stream"));
  m.def("gram_radius", &gram_radius,
        "The k-NN ball statistics of one Gram tile of queries x references, the GEMM route of\n"
        "radius_stats (cuda/src/radius_stats.cu; simgap::cuda::GramRadiusParams):\n"
        "count[q] += #{j : ||q - r_j|| < radii[j]}, max_ratio[q] = max(max_ratio[q],\n"
        "radii2[j] / ||q - r_j||^2) (+inf at distance 0).\n\n"
        SIMGAP_DOC_TILE
        "    (x and y are required here.)\n"
        "  radii, radii2: float64 per reference (global): the radii, and their squares or -1 for\n"
        "    a reference to ignore.\n"
        "  band: pairs with |d2 - radii2| <= band * (xn + yn) are recomputed exactly.\n"
        "  count: int64 per query (global), accumulated.\n"
        "  max_ratio: float64 per query (global), >= 0, updated.\n"
        "  is_double: the type of gram, x and y (float64, else float32).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("gram"), py::arg("ld"), py::arg("rows"), py::arg("cols"),
        py::arg("row0"), py::arg("col0"), py::arg("xn"), py::arg("yn"), py::arg("x"), py::arg("y"),
        py::arg("d"), py::arg("radii"), py::arg("radii2"), py::arg("band"), py::arg("count"),
        py::arg("max_ratio"), py::arg("is_double"), py::arg("device"), py::arg("stream"));
  m.def("candidate_distances", &candidate_distances,
        "out[i * c + k] = ||x[row0 + i] - y[cand[i * c + k]]|| exactly in float64 (+inf for an\n"
        "index outside [0, m)): the re-ranking distances of knn's candidates (cuda/src/knn.cu).\n\n"
        "  x, row0, rows: the rows of x (global indexing) and the slice [row0, row0 + rows).\n"
        "  y, m, d: the rows of y (m x d); x and y contiguous, float64 when is_double, else\n"
        "    float32.\n"
        "  cand, c: int64 (rows x c) indices into y.\n"
        "  out: float64 (rows x c).\n"
        "  is_double: the type of x and y (float64, else float32).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("x"), py::arg("row0"), py::arg("rows"), py::arg("y"), py::arg("m"),
        py::arg("d"), py::arg("cand"), py::arg("c"), py::arg("out"), py::arg("is_double"),
        py::arg("device"), py::arg("stream"));
  m.def("row_norms", &row_norms,
        "out[i] = ||x_i||^2 in float64 for the rows of a contiguous matrix\n"
        "(cuda/src/row_norms.cu).\n\n"
        "  x, n, d: the rows (n x d), float64 when is_double, else float32.\n"
        "  out: float64 (n).\n"
        "  is_double: the type of x (float64, else float32).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("x"), py::arg("n"), py::arg("d"), py::arg("out"),
        py::arg("is_double"), py::arg("device"), py::arg("stream"));
  m.def("sort_rows_temp_bytes", &sort_rows_temp_bytes,
        "Bytes of temporary storage sort_rows needs for `rows` rows of `length` values\n"
        "(cuda/src/sliced_wasserstein.cu).\n\n"
        "  length, rows: the shape to sort.\n"
        "  is_double: float64 values (else float32).\n"
        "  device: the CUDA device index.",
        py::arg("length"), py::arg("rows"), py::arg("is_double"), py::arg("device"));
  m.def("sort_rows", &sort_rows,
        "Sort each contiguous row of inp ascending into out with CUB radix sorts\n"
        "(cuda/src/sliced_wasserstein.cu).\n\n"
        "  inp, out: rows x length values, float64 when is_double, else float32.\n"
        "  length, rows: the shape.\n"
        "  temp, temp_bytes: temporary storage of at least sort_rows_temp_bytes bytes.\n"
        "  is_double: float64 values (else float32).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("inp"), py::arg("out"), py::arg("length"), py::arg("rows"),
        py::arg("temp"), py::arg("temp_bytes"), py::arg("is_double"), py::arg("device"),
        py::arg("stream"));
  m.def("wasserstein_1d", &wasserstein_1d,
        "out[l] += W_p^p(u_l, v_l) between sorted rows, exactly, for l < rows\n"
        "(cuda/src/sliced_wasserstein.cu).\n\n"
        "  u, n: sorted rows (rows x n), float64 when is_double, else float32.\n"
        "  cu: float64 (rows x n) cumulative weights of u in the sorted order, or 0 (uniform).\n"
        "  v, m, cv: the same for the other side (rows x m).\n"
        "  rows: the number of rows (directions).\n"
        "  p: the exponent, >= 1.\n"
        "  out: float64 (rows), accumulated.\n"
        "  is_double: the type of u and v (float64, else float32).\n"
        SIMGAP_DOC_DEVICE,
        py::kw_only(), py::arg("u"), py::arg("n"), py::arg("cu"), py::arg("v"), py::arg("m"),
        py::arg("cv"), py::arg("rows"), py::arg("p"), py::arg("out"), py::arg("is_double"),
        py::arg("device"), py::arg("stream"));
}
