// Turn the runtime kernel type into a compile-time constant for the hot loops
// (host code: the CUDA launchers).
#pragma once

#include <stdexcept>

#include "simgap/common.h"

// SIMGAP_KERNEL_SWITCH(kernel_type, KT, ...) runs the body (a lambda taking
// no argument and returning nothing) with `KT` a constexpr
// simgap::KernelType, for every kernel of the table (SIMGAP_KERNELS); an
// unknown type throws std::invalid_argument.
#define SIMGAP_KERNEL_SWITCH(TYPE, NAME, ...)                                       \
  ::simgap::visit_kernel(                                                           \
      TYPE,                                                                         \
      [&](auto simgap_kernel_tag_) {                                                \
        constexpr ::simgap::KernelType NAME = decltype(simgap_kernel_tag_)::value;  \
        return __VA_ARGS__();                                                       \
      },                                                                            \
      []() { throw std::invalid_argument("kernel: unknown kernel type"); })
