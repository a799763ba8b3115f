// simgap._C: converts NumPy arrays into the parameter structs of simgap/ops.h
// and calls the CPU operations with the GIL released.  The Python layer
// (python/simgap) validates every argument; the checks here only guard
// against misuse of this private module (they raise, never crash).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel_table.h"
#include "simgap/kernel_args.h"
#include "simgap/ops.h"

namespace py = pybind11;

namespace {

using simgap::KernelParams;
using simgap::MatrixView;

// Equality, not identity: an unpickled array (multiprocessing, torch.distributed
// objects, pickle files) has its own float32 dtype object.  A byte-swapped
// dtype is not equal, so non-native data is refused, never misread.
template <typename T>
bool is_dtype(const py::array& a) {
  return a.dtype().equal(py::dtype::of<T>());
}

template <typename T>
MatrixView<T> view2d(const py::array& a, const char* name) {
  if (!is_dtype<T>(a)) throw std::invalid_argument(std::string(name) + ": unexpected dtype");
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + ": expected a 2-D array");
  const auto item = static_cast<py::ssize_t>(sizeof(T));
  if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
    throw std::invalid_argument(std::string(name) + ": strides must be multiples of the item size");
  MatrixView<T> v;
  v.ptr = static_cast<const T*>(a.data());
  v.rows = a.shape(0);
  v.cols = a.shape(1);
  v.row_stride = a.strides(0) / item;
  v.col_stride = a.strides(1) / item;
  return v;
}

template <typename T>
T* contiguous_ptr(py::array& a, py::ssize_t size, const char* name, bool writable) {
  if (!is_dtype<T>(a)) throw std::invalid_argument(std::string(name) + ": unexpected dtype");
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + ": must be C-contiguous");
  if (a.size() != size) throw std::invalid_argument(std::string(name) + ": unexpected size");
  if (writable && !a.writeable()) throw std::invalid_argument(std::string(name) + ": must be writeable");
  return static_cast<T*>(a.mutable_data());
}

const double* optional_f64(const py::object& o, py::ssize_t size, const char* name) {
  if (o.is_none()) return nullptr;
  py::array a = o.cast<py::array>();
  return contiguous_ptr<double>(a, size, name, false);
}


template <typename T>
void fill_pair(simgap::PairParams<T>& p, const py::array& x, const py::array& y,
               const py::object& center, const KernelParams& kp, bool same) {
  p.x = view2d<T>(x, "x");
  p.y = view2d<T>(y, "y");
  if (p.x.cols != p.y.cols) throw std::invalid_argument("y: column count differs from x");
  p.center = optional_f64(center, p.x.cols, "center");
  p.kernel = kp;
  p.same = same;
}

// Calls body<float>() or body<double>() by the dtype of x.
template <typename F>
auto by_dtype(const py::array& x, F&& body) {
  if (is_dtype<float>(x)) return body(float{});
  if (is_dtype<double>(x)) return body(double{});
  throw std::invalid_argument("x: dtype must be float32 or float64");
}

void kernel_contract(py::array x, py::array y, py::array weights, py::array out, int kernel,
                     std::vector<double> scales, double gamma, double coef0, int degree,
                     py::object center, bool same, bool exclude_diagonal) {
  const KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::ContractParams<T> p;
    fill_pair(p, x, y, center, kp, same);
    if (weights.ndim() != 2 || weights.shape(0) != p.y.rows)
      throw std::invalid_argument("weights: expected shape (m, q)");
    p.q = weights.shape(1);
    p.weights = contiguous_ptr<T>(weights, p.y.rows * p.q, "weights", false);
    p.out = contiguous_ptr<double>(out, p.x.rows * p.q, "out", true);
    if (exclude_diagonal && !same)
      throw std::invalid_argument("same: exclude_diagonal needs x and y to be the same points");
    p.exclude_diagonal = exclude_diagonal;
    py::gil_scoped_release release;
    simgap::cpu::kernel_contract<T>(p);
  });
}

double kernel_sum(py::array x, py::array y, py::object a, py::object b, int kernel,
                  std::vector<double> scales, double gamma, double coef0, int degree,
                  py::object center, bool same, bool exclude_diagonal, bool symmetric,
                  py::object per_scale) {
  const KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  return by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::SumParams<T> p;
    fill_pair(p, x, y, center, kp, same);
    p.a = optional_f64(a, p.x.rows, "a");
    p.b = optional_f64(b, p.y.rows, "b");
    if (!same && (exclude_diagonal || symmetric))
      throw std::invalid_argument("same: exclude_diagonal and symmetric need x and y to be the same points");
    if (symmetric && a.ptr() != b.ptr()) throw std::invalid_argument("symmetric: needs a is b");
    p.exclude_diagonal = exclude_diagonal;
    p.symmetric = symmetric;
    if (!per_scale.is_none()) {
      py::array ps = per_scale.cast<py::array>();
      p.per_scale = contiguous_ptr<double>(ps, kp.n_scales, "per_scale", true);
    }
    py::gil_scoped_release release;
    return simgap::cpu::kernel_sum<T>(p);
  });
}

void kernel_matrix(py::array x, py::array y, py::array out, int kernel, std::vector<double> scales,
                   double gamma, double coef0, int degree, py::object center, bool same) {
  const KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::MatrixParams<T> p;
    fill_pair(p, x, y, center, kp, same);
    p.out = contiguous_ptr<T>(out, p.x.rows * p.y.rows, "out", true);
    py::gil_scoped_release release;
    simgap::cpu::kernel_matrix<T>(p);
  });
}

void sliced_wasserstein(py::array x, py::array y, py::array projections, py::object a,
                        py::object b, double p_exp, py::object center, py::array out) {
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::SlicedParams<T> p;
    p.x = view2d<T>(x, "x");
    p.y = view2d<T>(y, "y");
    if (p.x.cols != p.y.cols) throw std::invalid_argument("y: column count differs from x");
    if (p.x.rows == 0 || p.y.rows == 0) throw std::invalid_argument("x, y: need at least one row");
    if (projections.ndim() != 2 || projections.shape(0) != p.x.cols)
      throw std::invalid_argument("projections: expected shape (d, L)");
    p.n_projections = projections.shape(1);
    p.projections = contiguous_ptr<double>(projections, p.x.cols * p.n_projections, "projections", false);
    p.center = optional_f64(center, p.x.cols, "center");
    p.a = optional_f64(a, p.x.rows, "a");
    p.b = optional_f64(b, p.y.rows, "b");
    if (!(p_exp >= 1.0)) throw std::invalid_argument("p: must be >= 1");
    p.p = p_exp;
    p.out = contiguous_ptr<double>(out, p.n_projections, "out", true);
    py::gil_scoped_release release;
    simgap::cpu::sliced_wasserstein<T>(p);
  });
}

// Attach an optional row index (int64, values in [0, rows)) to a view.
template <typename T>
void attach_index(MatrixView<T>& v, const py::object& index, const char* name) {
  if (index.is_none()) return;
  py::array idx = index.cast<py::array>();
  if (idx.ndim() != 1) throw std::invalid_argument(std::string(name) + ": index must be 1-D");
  const int64_t* ptr = contiguous_ptr<int64_t>(idx, idx.size(), name, false);
  for (py::ssize_t i = 0; i < idx.size(); ++i)
    if (ptr[i] < 0 || ptr[i] >= v.rows) throw std::invalid_argument(std::string(name) + ": index out of range");
  v.index = ptr;
  v.rows = idx.size();
}

void kernel_rowwise(py::array x, py::array y, py::array out, int kernel, std::vector<double> scales,
                    double gamma, double coef0, int degree) {
  const KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::RowwiseParams<T> p;
    p.x = view2d<T>(x, "x");
    p.y = view2d<T>(y, "y");
    if (p.x.cols != p.y.cols || p.x.rows != p.y.rows)
      throw std::invalid_argument("y: must have the same shape as x");
    p.kernel = kp;
    p.out = contiguous_ptr<double>(out, p.x.rows, "out", true);
    py::gil_scoped_release release;
    simgap::cpu::kernel_rowwise<T>(p);
  });
}

void mmd_blocks(py::array x, py::array y, py::object x_index, py::object y_index, int64_t block,
                py::array out, int kernel, std::vector<double> scales, double gamma, double coef0,
                int degree, py::object center) {
  const KernelParams kp = simgap::make_kernel(kernel, scales, gamma, coef0, degree);
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::BlockParams<T> p;
    p.x = view2d<T>(x, "x");
    p.y = view2d<T>(y, "y");
    if (p.x.cols != p.y.cols) throw std::invalid_argument("y: column count differs from x");
    attach_index(p.x, x_index, "x_index");
    attach_index(p.y, y_index, "y_index");
    if (block < 2) throw std::invalid_argument("block_size: must be >= 2");
    p.block = block;
    p.n_blocks = std::min(p.x.rows, p.y.rows) / block;
    p.center = optional_f64(center, p.x.cols, "center");
    p.kernel = kp;
    p.out = contiguous_ptr<double>(out, p.n_blocks, "out", true);
    py::gil_scoped_release release;
    simgap::cpu::mmd_blocks<T>(p);
  });
}

void knn(py::array x, py::array y, int64_t k, py::object center, bool same, bool exclude_self,
         py::array dist, py::array index) {
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::KnnParams<T> p;
    p.x = view2d<T>(x, "x");
    p.y = view2d<T>(y, "y");
    if (p.x.cols != p.y.cols) throw std::invalid_argument("y: column count differs from x");
    if (k < 1) throw std::invalid_argument("k: must be >= 1");
    if (exclude_self && !same) throw std::invalid_argument("exclude_self: needs x and y to be the same points");
    p.k = k;
    p.same = same;
    p.exclude_self = exclude_self;
    p.center = optional_f64(center, p.x.cols, "center");
    p.dist = contiguous_ptr<double>(dist, p.x.rows * k, "dist", true);
    p.index = contiguous_ptr<int64_t>(index, p.x.rows * k, "index", true);
    py::gil_scoped_release release;
    simgap::cpu::knn<T>(p);
  });
}

void radius_stats(py::array x, py::array y, py::array radii, py::array radii2, py::object center,
                  py::array count, py::array max_ratio) {
  by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    simgap::RadiusParams<T> p;
    p.x = view2d<T>(x, "x");
    p.y = view2d<T>(y, "y");
    if (p.x.cols != p.y.cols) throw std::invalid_argument("y: column count differs from x");
    p.center = optional_f64(center, p.x.cols, "center");
    p.radii = contiguous_ptr<double>(radii, p.y.rows, "radii", false);
    p.radii2 = contiguous_ptr<double>(radii2, p.y.rows, "radii2", false);
    p.count = contiguous_ptr<int64_t>(count, p.x.rows, "count", true);
    p.max_ratio = contiguous_ptr<double>(max_ratio, p.x.rows, "max_ratio", true);
    py::gil_scoped_release release;
    simgap::cpu::radius_stats<T>(p);
  });
}

}  // namespace

// The docstrings' shared lines.
#define SIMGAP_DOC_XY \
  "  x, y: 2-D arrays (n x d, m x d) of the same dtype, float32 or float64, any strides.\n"
#define SIMGAP_DOC_KERNEL \
  "  kernel, scales, gamma, coef0, degree: the kernel (a kernel_types code; its per-bandwidth\n" \
  "    scales, simgap::KernelParams in simgap/common.h; polynomial options).\n"
#define SIMGAP_DOC_CENTER \
  "  center: float64 (d), subtracted from every row before the Gram products (distance\n" \
  "    kernels only), or None.\n"

PYBIND11_MODULE(_C, m) {
  m.doc() = "simgap CPU kernels (private: use the functions in the simgap package)";
  m.def("kernel_contract", &kernel_contract,
        "out (n x q, float64) += K(x, y) @ weights (cpp/src/kernel_contract_cpu.cpp;\n"
        "simgap::ContractParams).\n\n"
        SIMGAP_DOC_XY
        "  weights: m x q, C-contiguous, the dtype of x.\n"
        "  out: float64 (n x q), C-contiguous, accumulated.\n"
        SIMGAP_DOC_KERNEL
        SIMGAP_DOC_CENTER
        "  same: x and y are the same points (the diagonal is k(0) exactly).\n"
        "  exclude_diagonal: the diagonal counts as 0 (needs same).",
        py::arg("x"), py::arg("y"), py::arg("weights"), py::arg("out"), py::arg("kernel"),
        py::arg("scales"), py::arg("gamma"), py::arg("coef0"), py::arg("degree"),
        py::arg("center"), py::arg("same"), py::arg("exclude_diagonal") = false);
  m.def("kernel_sum", &kernel_sum,
        "sum_ij a_i K(x_i, y_j) b_j in float64 (cpp/src/kernel_sum_cpu.cpp; simgap::SumParams).\n\n"
        SIMGAP_DOC_XY
        "  a, b: float64 weights (n and m), or None for ones.\n"
        SIMGAP_DOC_KERNEL
        SIMGAP_DOC_CENTER
        "  same: x and y are the same points.\n"
        "  exclude_diagonal: skip i == j (needs same).\n"
        "  symmetric: x is y and a is b: only the tiles on and above the diagonal are evaluated.\n"
        "  per_scale: float64 (one per scale) that receives the sum for each gaussian bandwidth\n"
        "    alone, or None.",
        py::arg("x"), py::arg("y"), py::arg("a"), py::arg("b"), py::arg("kernel"),
        py::arg("scales"), py::arg("gamma"), py::arg("coef0"), py::arg("degree"),
        py::arg("center"), py::arg("same"), py::arg("exclude_diagonal"), py::arg("symmetric"),
        py::arg("per_scale") = py::none());
  m.def("kernel_rowwise", &kernel_rowwise,
        "out[i] = k(x_i, y_i) for paired rows, distances taken directly in float64\n"
        "(cpp/src/kernel_rowwise_cpu.cpp; simgap::RowwiseParams).\n\n"
        "  x, y: 2-D arrays of the same shape and dtype (float32 or float64).\n"
        "  out: float64 (n), C-contiguous.\n"
        SIMGAP_DOC_KERNEL,
        py::arg("x"), py::arg("y"), py::arg("out"), py::arg("kernel"), py::arg("scales"),
        py::arg("gamma"), py::arg("coef0"), py::arg("degree"));
  m.def("mmd_blocks", &mmd_blocks,
        "out[b] = the unbiased MMD^2 of block b of B rows of x against the same block of y\n"
        "(cpp/src/mmd_blocks_cpu.cpp; simgap::BlockParams).\n\n"
        SIMGAP_DOC_XY
        "  x_index, y_index: int64 row orders (a permutation or subset), or None.\n"
        "  block: B >= 2; there are min(rows of x, rows of y) // B blocks.\n"
        "  out: float64, one value per block.\n"
        SIMGAP_DOC_KERNEL
        SIMGAP_DOC_CENTER,
        py::arg("x"), py::arg("y"), py::arg("x_index"), py::arg("y_index"), py::arg("block"),
        py::arg("out"), py::arg("kernel"), py::arg("scales"), py::arg("gamma"),
        py::arg("coef0"), py::arg("degree"), py::arg("center"));
  m.def("kernel_matrix", &kernel_matrix,
        "out (n x m, the dtype of x) = K(x, y) (cpp/src/kernel_matrix_cpu.cpp;\n"
        "simgap::MatrixParams).\n\n"
        SIMGAP_DOC_XY
        "  out: n x m, C-contiguous, the dtype of x.\n"
        SIMGAP_DOC_KERNEL
        SIMGAP_DOC_CENTER
        "  same: x and y are the same points (the diagonal is k(0) exactly).",
        py::arg("x"), py::arg("y"), py::arg("out"), py::arg("kernel"), py::arg("scales"),
        py::arg("gamma"), py::arg("coef0"), py::arg("degree"), py::arg("center"),
        py::arg("same"));
  m.def("sliced_wasserstein", &sliced_wasserstein,
        "out[l] = W_p^p between the projections of x and y on direction l\n"
        "(cpp/src/sliced_wasserstein_cpu.cpp; simgap::SlicedParams).\n\n"
        SIMGAP_DOC_XY
        "  projections: float64 (d x L), C-contiguous, column l the direction theta_l.\n"
        "  a, b: float64 weights of x and y (each summing to 1), or None for uniform.\n"
        "  p: the exponent, >= 1.\n"
        "  center: float64 (d), subtracted before projecting, or None.\n"
        "  out: float64 (L), C-contiguous.",
        py::arg("x"), py::arg("y"), py::arg("projections"), py::arg("a"), py::arg("b"),
        py::arg("p"), py::arg("center"), py::arg("out"));
  m.def("knn", &knn,
        "The k nearest rows of y for every row of x, by exact float64 distance, ties to the\n"
        "lower index (cpp/src/knn_cpu.cpp; simgap::KnnParams).\n\n"
        SIMGAP_DOC_XY
        "  k: neighbours per row, >= 1.\n"
        "  center: float64 (d) subtracted before the Gram products, or None.\n"
        "  same: x and y are the same points.\n"
        "  exclude_self: row i is not its own neighbour (needs same).\n"
        "  dist: float64 (n x k), ascending; +inf where there are fewer than k candidates.\n"
        "  index: int64 (n x k); -1 where there are fewer than k candidates.",
        py::arg("x"), py::arg("y"), py::arg("k"), py::arg("center"), py::arg("same"),
        py::arg("exclude_self"), py::arg("dist"), py::arg("index"));
  m.def("radius_stats", &radius_stats,
        "count[q] = #{j : ||x_q - y_j|| < radii[j]} and max_ratio[q] = max_j radii2[j] /\n"
        "||x_q - y_j||^2 (+inf at distance 0) (cpp/src/radius_stats_cpu.cpp;\n"
        "simgap::RadiusParams).\n\n"
        "  x, y: the queries (n x d) and the references (m x d), as above.\n"
        "  radii, radii2: float64 (m): the radii, and their squares or -1 for a reference to\n"
        "    ignore.\n"
        "  center: float64 (d) subtracted before the Gram products, or None.\n"
        "  count: int64 (n).\n"
        "  max_ratio: float64 (n).",
        py::arg("x"), py::arg("y"), py::arg("radii"), py::arg("radii2"), py::arg("center"),
        py::arg("count"), py::arg("max_ratio"));
  m.def("isa", &simgap::cpu::isa_name, "Instruction set the CPU tile loops dispatched to.");
  m.def("max_threads", &simgap::cpu::max_threads, "Threads an operation will use.");
#if defined(_OPENMP)
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  simgap::export_kernel_table(m);
}
