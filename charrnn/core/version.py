"""charrnn's version and the run-format versions it writes and reads.

Imports nothing, so the configs and `charrnn --version` need neither torch nor the package front door.
"""

__version__ = "0.2.0"  # the same as pyproject.toml's version (a test checks)

FORMAT_VERSION = 2  # of config.json and resume.safetensors (see `charrnn.core.rundir`)
READABLE_VERSIONS = (1, 2)
