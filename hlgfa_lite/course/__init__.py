"""The course: the notebooks' ``setup``, the ablation widget, the exercises' immediate-feedback checkers and
the notebook runner that executes ``notebooks/`` with papermill (CI and classroom profiles).

Notebooks import from here, from :mod:`hlgfa_lite.figures` and from the two layers below; they never
re-implement the method.
"""
