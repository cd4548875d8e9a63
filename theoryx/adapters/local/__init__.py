"""adapters.local."""
