"""How much cluster structure a clustering found: one word and one plain sentence.

:func:`assess_structure` judges a labelling of a sample of rows: ``"strong"``,
``"reasonable"``, ``"weak"`` (Kaufman and Rousseeuw's silhouette bands: above 0.70,
above 0.50, above 0.25) or ``"none"`` (a silhouette of at most 0.25).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The verdicts, strongest first.
STRUCTURES = ("strong", "reasonable", "weak", "none")

#: Lowest silhouette of each verdict but "none" (Kaufman and Rousseeuw, 1990).
_SILHOUETTE_BANDS = (("strong", 0.70), ("reasonable", 0.50), ("weak", 0.25))


@dataclass
class StructureVerdict:
    """What :func:`assess_structure` concluded.

    Attributes
    ----------
    structure : {"strong", "reasonable", "weak", "none"}
    sentence : str
        The verdict in one plain sentence for a reader who does not know the criteria.
    details : dict
        The figures behind it (JSON-ready numbers), for ``summary.json``.
    """

    structure: str
    sentence: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"structure": self.structure, "sentence": self.sentence, **self.details}


def structure_from_silhouette(silhouette: float | None) -> str:
    """The silhouette band a mean silhouette falls in (None: "none")."""
    if silhouette is None or not np.isfinite(silhouette):
        return "none"
    for name, low in _SILHOUETTE_BANDS:
        if silhouette > low:
            return name
    return "none"


def assess_structure(X: np.ndarray, labels: np.ndarray, *, silhouette: float | None, seed: int = 0) -> StructureVerdict:
    """The structure of ``labels`` on ``X`` (a sample of the clustered rows, float64,
    on the host, at most some tens of thousands) given the labelling's mean
    ``silhouette`` over the whole table (or its estimate)."""
    k = int(np.unique(labels).size)
    structure = structure_from_silhouette(silhouette)
    sentences = {
        "strong": f"The {k} segments are clearly separated.",
        "reasonable": f"The {k} segments are reasonably well separated.",
        "weak": f"The {k} segments overlap a lot: treat them as a convenient split, not natural groups.",
        "none": f"The customers do not form distinct groups: the {k} segments are an arbitrary split.",
    }
    return StructureVerdict(structure, sentences[structure],
                            {"silhouette": None if silhouette is None else float(silhouette)})


__all__ = ["STRUCTURES", "StructureVerdict", "assess_structure", "structure_from_silhouette"]
