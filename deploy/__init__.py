"""Deployment helpers: the image's pinned dependencies (lock.py)."""
