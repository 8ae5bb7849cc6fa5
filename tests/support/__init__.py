"""Helpers the tests share: media builders, the chaos harness, tiny CLIP checkpoints, the
development data's location. Benchmarks import from here too (run as `python -m
benchmarks.X` from the repository root); tests import neither benchmarks nor the demo."""
