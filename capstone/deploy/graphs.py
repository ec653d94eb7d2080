"""What the exporters share: the SavedModel tag, and adding ops to a finalized graph."""

import contextlib

TAG = "serve"


@contextlib.contextmanager
def unfinalized(graph):
    """Add ops to a graph FinalModel finalized (it stays finalized afterwards).

    Only the exporter does this, once, before any thread uses the model.
    """
    graph._unsafe_unfinalize()  # noqa: SLF001 (TensorFlow's own MonitoredSession uses it the same way)
    try:
        with graph.as_default():
            yield
    finally:
        graph.finalize()
