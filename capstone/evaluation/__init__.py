"""Scoring captions: pycocoevalcap metrics, the nearest-neighbour baseline, evaluating a run.

    metrics.py       BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap; a pure-Python fallback)
    baseline.py      nearest-neighbour consensus captions from the training images
    evaluate_run.py  a run's captions for a test split, scored; the examples grid
    examples.py      the course's example helpers (caption one image, show a validation example)

May import the course (``capstone.final_model``, ``capstone.captions``), ``capstone.data``,
``capstone.encoders``, ``capstone.support``.
"""
