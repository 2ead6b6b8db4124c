"""scikit-learn's own estimator checks, with the same expected failures as its KMeans."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from gpukmeans import KMeans

# scikit-learn marks exactly these as expected failures for sklearn.cluster.KMeans
# (sklearn/utils/_test_common/instance_generator.py): k-means with weights is not the
# same as k-means on repeated rows once the initialisation is random.
SKLEARN_KMEANS_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data": (
        "sample_weight is not equivalent to removing/repeating samples (as in scikit-learn's KMeans)."
    ),
    "check_sample_weight_equivalence_on_sparse_data": (
        "sample_weight is not equivalent to removing/repeating samples (as in scikit-learn's KMeans)."
    ),
}


@parametrize_with_checks(
    [KMeans(device="cpu")], expected_failed_checks=lambda _: SKLEARN_KMEANS_EXPECTED_FAILURES
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
