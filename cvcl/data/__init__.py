"""Splits, patch datasets, augmentation and batch samplers."""
