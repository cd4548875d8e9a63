"""store.gc."""
