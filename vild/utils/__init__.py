"""Small utilities shared across vild: atomic file writes, logging helpers."""
