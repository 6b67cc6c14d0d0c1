"""screen transforms (to be implemented)."""
