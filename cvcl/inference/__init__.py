"""Sliding-window prediction of whole volumes."""
