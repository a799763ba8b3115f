"""simgap: measure and close the gap between synthetic and real data in the
latent space of your own model.

The distance kernels are fused and tiled C++ (``simgap._C``; ``simgap._cuda``
when built with CUDA): a kernel matrix between n and m points is never formed
unless :func:`kernel_matrix` is asked for it.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from ._ops.backend import backends, build_info
from .kernels import KERNELS, kernel_contract, kernel_matrix, median_bandwidth
from .metrics import frechet_distance, nearest_neighbors, prdc, realism_score
from .mmd import MMDTestResult, mmd2, mmd2_batch, mmd_test
from .sliced import random_projections, sliced_wasserstein
from .space import Categorical, Float, Int
from .recommend import Recommendation, recommend
from .optimize import SimOptimizer
from . import simulators
from . import distributed  # torch.distributed is imported only when its functions run
from .compare import VERDICTS, compare
from .report import SCHEMA_VERSION, GapReport
from .store import EmbeddingStore, StoreError, as_embeddings, load_embeddings, save_embeddings
from .embedding import Embedder

try:
    __version__ = _version("simgap")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Categorical",
    "Float",
    "Int",
    "Recommendation",
    "SimOptimizer",
    "recommend",
    "simulators",
    "distributed",
    "GapReport",
    "SCHEMA_VERSION",
    "VERDICTS",
    "compare",
    "Embedder",
    "EmbeddingStore",
    "KERNELS",
    "MMDTestResult",
    "StoreError",
    "__version__",
    "as_embeddings",
    "backends",
    "build_info",
    "frechet_distance",
    "kernel_contract",
    "kernel_matrix",
    "load_embeddings",
    "median_bandwidth",
    "nearest_neighbors",
    "prdc",
    "realism_score",
    "mmd2",
    "mmd2_batch",
    "mmd_test",
    "random_projections",
    "save_embeddings",
    "sliced_wasserstein",
]
