// simgap._cuda: the CUDA module, built only when nvcc is found.  It links the
// CUDA runtime statically, so it imports on machines without a GPU; its
// functions report "no device" instead of failing at import.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "simgap/cuda_ops.h"

namespace py = pybind11;

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(status));
}

// Evaluate the kernel elementwise on device buffers given as integer
// addresses (torch's data_ptr()), on the given stream (torch's cuda_stream).
void kernel_values(std::uintptr_t d2, std::uintptr_t g, std::uintptr_t out, int64_t n,
                   bool is_double, int kernel, std::vector<double> scales, double gamma,
                   double coef0, int degree, std::uintptr_t stream) {
  if (kernel < 0 || kernel > static_cast<int>(simgap::KernelType::Energy))
    throw std::invalid_argument("kernel: unknown kernel type");
  if (scales.empty() || scales.size() > static_cast<size_t>(simgap::kMaxBandwidths))
    throw std::invalid_argument("bandwidth: between 1 and 32 scales are supported");
  simgap::KernelParams kp;
  kp.type = static_cast<simgap::KernelType>(kernel);
  kp.n_scales = static_cast<int>(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) kp.scale[i] = scales[i];
  kp.gamma = gamma;
  kp.coef0 = coef0;
  kp.degree = degree;
  auto s = reinterpret_cast<cudaStream_t>(stream);
  py::gil_scoped_release release;
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

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "simgap CUDA kernels (private: use the functions in the simgap package)";
  m.def("device_count", &simgap::cuda::device_count);
  m.def("runtime_version", &simgap::cuda::runtime_version);
  m.def("driver_version", &simgap::cuda::driver_version);
  m.def("device_name", &simgap::cuda::device_name, py::arg("device"));
  m.def("kernel_values", &kernel_values, py::arg("d2"), py::arg("g"), py::arg("out"),
        py::arg("n"), py::arg("is_double"), py::arg("kernel"), py::arg("scales"),
        py::arg("gamma"), py::arg("coef0"), py::arg("degree"), py::arg("stream"));
}
