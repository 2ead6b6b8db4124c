"""Cluster-quality metrics for choosing k, on a torch device, in bounded memory.

Exact values (plain ``float``):

* :func:`silhouette_score`, :func:`silhouette_samples`: the exact Euclidean
  silhouette, O(n^2) work in tiles, O(n k) memory; matches scikit-learn.
* :func:`calinski_harabasz_score`, :func:`davies_bouldin_score`: O(n d),
  with optional frequency ``sample_weight``; :func:`centroid_scores` gives both
  from the passes one of them takes.
* :func:`simplified_silhouette_score`, :func:`simplified_silhouette_samples`:
  the centroid-based variant, O(n k d); a different index, named as such.

Estimates, stratified by cluster, with an interval from the influence of each
sampled row:

* :func:`silhouette_score_sampled`: a :class:`SilhouetteEstimate` (value and
  interval), not a float, so that the interval is read.
* :func:`silhouette_score` with ``sample_size=``: a :class:`SampledSilhouetteScore`,
  a ``float`` carrying the same estimate, a drop-in for scikit-learn's.
"""

from ._sampled import SampledSilhouetteScore, SilhouetteEstimate, silhouette_score_sampled
from ._scores import CentroidScores, calinski_harabasz_score, centroid_scores, davies_bouldin_score
from ._silhouette import silhouette_samples, silhouette_score
from ._simplified import simplified_silhouette_samples, simplified_silhouette_score

__all__ = [
    "CentroidScores",
    "SampledSilhouetteScore",
    "SilhouetteEstimate",
    "calinski_harabasz_score",
    "centroid_scores",
    "davies_bouldin_score",
    "silhouette_samples",
    "silhouette_score",
    "silhouette_score_sampled",
    "simplified_silhouette_samples",
    "simplified_silhouette_score",
]
