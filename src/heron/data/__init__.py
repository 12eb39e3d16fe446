"""Experience storage: replay buffers (and, later, datasets)."""
