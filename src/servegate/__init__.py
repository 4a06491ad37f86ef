"""servegate: a Kong-compatible LLM gateway for self-hosted inference servers."""

__version__ = "0.1.0"
# The Kong version whose Admin API and proxy behaviour servegate follows.
KONG_VERSION = "3.9.3"
SERVER_TOKEN = f"servegate/{__version__}"
