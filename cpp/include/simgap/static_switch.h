// Turn runtime choices into compile-time constants for the hot loops.
#pragma once

#include <stdexcept>

#include "simgap/common.h"

// SIMGAP_KERNEL_SWITCH(kernel_type, KT, ...) runs the body with `KT` a
// constexpr simgap::KernelType.
#define SIMGAP_KERNEL_SWITCH(TYPE, NAME, ...)                                  \
  [&] {                                                                        \
    switch (TYPE) {                                                            \
      case ::simgap::KernelType::Gaussian: {                                   \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::Gaussian;  \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::simgap::KernelType::Laplacian: {                                  \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::Laplacian; \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::simgap::KernelType::IMQ: {                                        \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::IMQ;       \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::simgap::KernelType::Polynomial: {                                 \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::Polynomial; \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::simgap::KernelType::Linear: {                                     \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::Linear;    \
        return __VA_ARGS__();                                                  \
      }                                                                        \
      case ::simgap::KernelType::Energy: {                                     \
        constexpr ::simgap::KernelType NAME = ::simgap::KernelType::Energy;    \
        return __VA_ARGS__();                                                  \
      }                                                                        \
    }                                                                          \
    throw std::invalid_argument("kernel: unknown kernel type");                \
  }()

// SIMGAP_BOOL_SWITCH(cond, NAME, ...) runs the body with `NAME` a constexpr bool.
#define SIMGAP_BOOL_SWITCH(COND, NAME, ...) \
  [&] {                                     \
    if (COND) {                             \
      constexpr bool NAME = true;           \
      return __VA_ARGS__();                 \
    } else {                                \
      constexpr bool NAME = false;          \
      return __VA_ARGS__();                 \
    }                                       \
  }()
