"""Networks of aisolve (phasing, element and hydrogen assignment), their training and weights."""
from aisolve.core import _cctbx_first  # noqa: F401  (cctbx before torch/rdkit/gemmi)
