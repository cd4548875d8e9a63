"""adapters.modal."""
