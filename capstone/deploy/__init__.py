"""Deployment: a trained run as a SavedModel (TensorFlow Serving) and as TFLite models (edge).

    export.py      the export graph (image bytes in, caption strings out) and the SavedModel writer
    image_ops.py   decode + centre crop + resize inside the graph, as ``capstone.encoders.images``
    tflite.py      encoder/init/one-step TFLite models and the host-side greedy loop that runs them

May import the course (``capstone.final_model``), ``capstone.encoders`` and ``capstone.support``.
"""
