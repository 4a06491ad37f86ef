"""`python tests/node/run_node.py start`: servegate's CLI with the test-only nodetest plugin registered first."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nodetest_plugin  # noqa: E402,F401 - registers the plugin

from servegate.cli.main import main  # noqa: E402

main()
