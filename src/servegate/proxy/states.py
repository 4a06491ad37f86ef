"""Exchange states (own module so that phases can use them without importing exchange)."""

from typing import Final

# Final: the compiled build inlines them.
NEW: Final = 0
ACCESS: Final = 1
CONNECTING: Final = 2
SENT: Final = 3
STREAMING: Final = 4
DONE: Final = 5
