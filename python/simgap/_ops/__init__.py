"""The compute layer.  Everything above it calls these, never ``_C`` or
``_cuda`` directly.  Modules, bottom to top:

- ``backend``: the compiled modules (``CPU``, ``CUDA``), backends(), build_info();
- ``inputs``: the device of a call (``device_of``) and the one input checker
  (matrices, weights) for NumPy, CPU-torch and CUDA inputs and shards;
- ``spec``: the kernels (the compiled core's table) and ``KernelSpec``;
- ``cpu`` | ``cuda``: each primitive on the host (over ``_C``) and on CUDA;
- ``cuda_routes``: the cuBLAS-GEMM tile route and the tensor-core route;
- ``dispatch``: the one place that chooses CPU or CUDA, and the CUDA route
  and precision, for each primitive.
"""
