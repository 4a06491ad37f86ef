"""Exchange states (own module so that phases can use them without importing exchange)."""

NEW, ACCESS, CONNECTING, SENT, STREAMING, DONE = range(6)
