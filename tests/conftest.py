from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA_DIR = Path(__file__).parent / "data"
MALL_CSV = DATA_DIR / "Mall_Customers.csv"
RETAIL_CSV = DATA_DIR / "OnlineRetail_sample.csv"
MALL_COLUMNS = ["Annual Income (k$)", "Spending Score (1-100)"]


@pytest.fixture
def mall_income_spending() -> np.ndarray:
    """The two Mall columns of the textbook segmentation, float64, unscaled."""
    return pd.read_csv(MALL_CSV)[MALL_COLUMNS].to_numpy(dtype=np.float64)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=600, centers=5, n_features=4, cluster_std=1.5, random_state=3)
    return X, y
