"""Running the method: devices and threads, train, the run folder and its checkpoint, evaluate
(metrics), predict, ablation (with paired bootstrap statistics), the demo job and the
``hlgfa-lite`` command line.

Built on :mod:`hlgfa_lite.method`; the figures a run writes next to its checkpoint are drawn by
:mod:`hlgfa_lite.figures`, a leaf module (imported only when a figure is written).
"""
