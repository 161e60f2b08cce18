"""Data sets, readers, transforms and the synthetic generator."""
