"""The course: figures, the ablation widget, the exercises' immediate-feedback checkers and the
notebook runner that executes ``notebooks/`` with papermill (CI and classroom profiles).

Notebooks import from here and from the two layers below; they never re-implement the method.
"""
