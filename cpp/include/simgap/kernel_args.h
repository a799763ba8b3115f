// KernelParams from the arguments the Python layer passes to both compiled
// modules (kernel code, per-bandwidth scales, polynomial options); checked
// here so that misuse of the private modules raises instead of crashing.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "simgap/common.h"

namespace simgap {

inline KernelParams make_kernel(int type, const std::vector<double>& scales, double gamma,
                                double coef0, int degree) {
  if (type < 0 || type >= kNumKernels)
    throw std::invalid_argument("kernel: unknown kernel type");
  if (scales.empty() || scales.size() > static_cast<size_t>(kMaxBandwidths))
    throw std::invalid_argument("bandwidth: between 1 and " + std::to_string(kMaxBandwidths) +
                                " scales are supported");
  if (degree < 1) throw std::invalid_argument("degree: must be a positive integer");
  KernelParams kp;
  kp.type = static_cast<KernelType>(type);
  kp.n_scales = static_cast<int>(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) kp.scale[i] = scales[i];
  kp.gamma = gamma;
  kp.coef0 = coef0;
  kp.degree = degree;
  return kp;
}

}  // namespace simgap
