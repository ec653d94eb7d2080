"""What the course code leans on: atomic file writes, the TensorFlow session, the run directory and its loss plot.

May import only ``capstone.errors`` and ``capstone.config``.
"""
