"""File formats and safe writes."""
