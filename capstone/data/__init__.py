"""Data: caption files (COCO zip/JSON, CSV) and the offline shapes dataset.

May import: ``capstone.errors``, ``capstone.support``, ``capstone.captions``. Nothing above it.
"""
