"""Benchmarks of ViLD against its peers and this machine's limit; `python -m benchmarks.run`.

Every figure is a ratio of two things measured in the same run (interleaved, each in its own
process where memory is compared), with the absolute numbers for context. See
docs/benchmarks.md.
"""
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GIN = os.path.join(REPO, "configs", "tiny", "vild_tiny.gin")
