"""The anomaly map split exactly into what each level's evidence put into it, for an explanation.

The split itself is the map's owner's (:meth:`~hlgfa_lite.method.anomaly_map.AnomalyMapGenerator.terms`):
the terms add up to the map. On a normal image each evidence is ~1, so its term there is ~its weight
share (:func:`normal_shares`): what a term holds above that is what the evidence raised the map by.
"""

from __future__ import annotations

import torch

from ..method.model import HLGFA


def normal_shares(model: HLGFA) -> dict[str, float]:
    """What each evidence's term is on a normal image (each energy ~1): its weight share."""
    return model.map_generator.evidence_shares()


@torch.no_grad()
def evidence_terms(
    model: HLGFA, images: torch.Tensor
) -> tuple[dict[tuple[int, str], torch.Tensor], dict[tuple[int, str], torch.Tensor]]:
    """(terms, energies) for (B, 3, S, S) images: ``terms[level, evidence]`` (B, 1, S, S) add up to the
    anomaly map; ``energies[level, evidence]`` (B, 1, h, w) are each evidence's energy on its grid."""
    model.eval()
    return model.map_generator.terms(model.level_vectors(model(images)), images.shape[-1])
