"""Data: caption files (COCO zip/JSON, CSV, Flickr8k/30k files, split JSON) and the offline shapes dataset.

May import: ``capstone.errors``, ``capstone.support``, ``capstone.captions``. Nothing above it.
"""
