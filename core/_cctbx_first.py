"""Load cctbx's extension modules (and with them its bundled libstdc++) before anything else."""
import boost_adaptbx.boost.python  # noqa: F401
from cctbx.array_family import flex  # noqa: F401
