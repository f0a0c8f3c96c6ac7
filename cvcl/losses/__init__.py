"""Loss terms. Each function documents the shapes it takes; none moves tensors between devices."""
