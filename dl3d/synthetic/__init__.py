"""Synthetic datasets the project generates itself (nothing here is real captured data)."""
