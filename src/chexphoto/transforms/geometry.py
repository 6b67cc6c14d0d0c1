"""geometry transforms (to be implemented)."""
