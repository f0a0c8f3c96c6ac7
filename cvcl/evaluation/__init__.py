"""Segmentation metrics with medpy's definitions, and their summaries."""
