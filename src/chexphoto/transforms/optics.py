"""optics transforms (to be implemented)."""
