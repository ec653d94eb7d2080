"""The caption service: Flask page + JSON API, image search, safe URL fetching.

    captioner.py     an image's bytes -> checked pixels -> captions (no HTTP here)
    app.py           the Flask app: caption routes, search routes, error pages
    search_index.py  TF-IDF over the captions of a folder of photos, saved to disk
    url_fetch.py     fetch an image URL from public addresses only
    cli.py           ``python -m capstone serve``

May import the course (``capstone.final_model``), ``capstone.encoders`` and ``capstone.support``.
"""
