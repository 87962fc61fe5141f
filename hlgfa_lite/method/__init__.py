"""The method: config, data, frozen backbone, the switchable blocks, the model and how it scores.

Reading order follows the pipeline: ``config`` → ``data/`` → ``backbone`` → ``blocks/`` →
``model`` → ``scoring/`` (normal models) → ``anomaly_map`` (map and image score) →
``selection`` (``scoring=auto``: which normal model) → ``calibration`` (fitting it after training).
Nothing here imports the ``run`` or ``course`` layers.
"""
