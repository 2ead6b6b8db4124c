"""scikit-learn's parameter constraints, imported in one place.

The estimators declare their parameters as scikit-learn's do (``_parameter_constraints``,
checked by ``BaseEstimator._validate_params`` at ``fit``), with ``Interval``, ``Options``
and ``StrOptions``. scikit-learn keeps them in its private ``sklearn.utils._param_validation``
and has no public module for them (the tests run with scikit-learn 1.6 to 1.9); every
module of gpukmeans takes them from here, so that a move there is one line to change here.
"""

from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions, make_constraint

__all__ = ["Interval", "InvalidParameterError", "Options", "StrOptions", "make_constraint"]
