// The kernel table (SIMGAP_KERNELS, simgap/common.h) as both compiled modules
// export it, so that Python reads the kernels from here and keeps no copy.
#pragma once

#include <pybind11/pybind11.h>

#include "simgap/common.h"

namespace simgap {

// kernel_types: {name: code} in the table's order (code = position, the
// KernelType value the functions take); distance_kernels / bandwidth_kernels:
// the names with those properties, in the same order; max_bandwidths: the most
// bandwidths (scales) one kernel takes.
inline void export_kernel_table(pybind11::module_& m) {
  namespace py = pybind11;
  py::dict types;
  py::list distance, bandwidth;
#define SIMGAP_EXPORT_KERNEL_(Type, name, is_distance, is_root, has_bandwidth) \
  types[name] = static_cast<int>(KernelType::Type);                             \
  if (is_distance) distance.append(name);                                       \
  if (has_bandwidth) bandwidth.append(name);
  SIMGAP_KERNELS(SIMGAP_EXPORT_KERNEL_)
#undef SIMGAP_EXPORT_KERNEL_
  m.attr("kernel_types") = types;
  m.attr("distance_kernels") = py::tuple(distance);
  m.attr("bandwidth_kernels") = py::tuple(bandwidth);
  m.attr("max_bandwidths") = kMaxBandwidths;
}

}  // namespace simgap
