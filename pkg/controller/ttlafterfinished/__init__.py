"""The TTL-after-finished controller."""
