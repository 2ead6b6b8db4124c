"""The saved model: exact assignment, safetensors round trip, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from gpukmeans.segmentation import InputError, Preprocessor, SegmentModel, load_model, nearest_centers, save_model


def test_nearest_centers_matches_brute_force_and_breaks_ties_low():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 5))
    centers = rng.normal(size=(7, 5))
    labels, distances = nearest_centers(X, centers)
    full = np.linalg.norm(X[:, None, :] - centers[None], axis=2)
    np.testing.assert_array_equal(labels, full.argmin(axis=1))
    np.testing.assert_allclose(distances, full.min(axis=1), rtol=1e-12)
    tie_labels, _ = nearest_centers(np.zeros((1, 2)), np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert tie_labels.tolist() == [0]


def test_a_rows_label_does_not_depend_on_the_rest_of_the_table():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40_000, 6))
    centers = X[:9] + 1e-9  # near-ties everywhere
    labels, distances = nearest_centers(X, centers)
    for start, stop in [(0, 1), (17, 20_000), (33_333, 40_000)]:
        part_labels, part_distances = nearest_centers(X[start:stop], centers)
        np.testing.assert_array_equal(part_labels, labels[start:stop])
        np.testing.assert_array_equal(part_distances, distances[start:stop])


def _model():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "id": [f"{i:04d}" for i in range(300)],
            "spend": rng.lognormal(3, 1, 300),
            "age": rng.normal(40, 10, 300),
            "channel": rng.choice(["web", "store"], 300),
        }
    )
    prep = Preprocessor(categorical=["channel"]).fit(frame)
    centers = prep.transform(frame).X[[0, 100, 200]]
    model = SegmentModel(prep, centers, ["A", "B", "C"], {"k": 3, "note": "é"})
    return model, frame


def test_round_trip_is_exact_and_predicts_the_same(tmp_path):
    model, frame = _model()
    path = save_model(model, tmp_path / "model.safetensors")
    loaded = load_model(tmp_path)  # the folder works too
    np.testing.assert_array_equal(loaded.cluster_centers, model.cluster_centers)
    assert loaded.segment_names == ["A", "B", "C"] and loaded.info["note"] == "é"
    pd.testing.assert_frame_equal(loaded.predict_frame(frame), model.predict_frame(frame))
    # No pickle: the file is a safetensors header (JSON) followed by raw float64s.
    raw = path.read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_length])
    assert header["cluster_centers"]["dtype"] == "F64"
    assert json.loads(header["__metadata__"]["preprocessing"])["categories"] == {"channel": ["store", "web"]}


def test_predict_frame_columns():
    model, frame = _model()
    segments = model.predict_frame(frame)
    assert list(segments.columns) == ["id", "segment", "segment_name", "distance"]
    assert segments["id"].iloc[0] == "0000"
    assert segments["segment"].iloc[[0, 100, 200]].tolist() == [0, 1, 2]
    assert segments["distance"].iloc[0] == 0.0


def test_a_table_that_does_not_fit_the_model_is_a_clear_error():
    model, frame = _model()
    with pytest.raises(InputError, match="new.csv does not fit the model: it lacks column\\(s\\) 'age'"):
        model.predict_frame(frame.drop(columns=["age"]), source="new.csv")
    with pytest.raises(InputError, match="'age' in new.csv is not numeric"):
        model.predict_frame(frame.assign(age="old"), source="new.csv")


def test_loading_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="is not a gpukmeans segmentation model"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="is not a gpukmeans segmentation model"):
        load_model(tmp_path / "other.safetensors")


def test_a_version_1_model_reads_as_the_same_transformation(tmp_path):
    # Version 1 stored each feature's centre and scale of the raw features; version 2
    # stores them as the conditioning, with centre 0 and scale 1 after it. With the
    # robust scaler the two say the same, so the version 1 file predicts alike.
    from safetensors.numpy import load, save

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"id": [f"{i:04d}" for i in range(200)], "spend": rng.lognormal(3, 1, 200),
                          "age": rng.normal(40, 10, 200)})
    prep = Preprocessor(scale="robust").fit(frame)
    model = SegmentModel(prep, prep.transform(frame).X[[0, 50, 100]], ["A", "B", "C"], {"k": 3})
    path = save_model(model, tmp_path / "v2.safetensors")
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    preprocessing = json.loads(header["preprocessing"])
    assert preprocessing["center"] == [0.0, 0.0] and preprocessing["scale_values"] == [1.0, 1.0]
    preprocessing["center"] = preprocessing.pop("shift")
    preprocessing["scale_values"] = preprocessing.pop("unit")
    metadata = {**header, "format_version": "1", "preprocessing": json.dumps(preprocessing)}
    (tmp_path / "v1.safetensors").write_bytes(save(load(raw), metadata=metadata))
    old = load_model(tmp_path / "v1.safetensors")
    pd.testing.assert_frame_equal(old.predict_frame(frame), model.predict_frame(frame))


def test_a_model_fitted_with_a_constant_column_predicts_from_its_file(tmp_path):
    from gpukmeans.segmentation import predict, segment

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"CustomerID": np.arange(40) + 1000, "Recency": 3.0,
                          "Frequency": rng.poisson(3, 40).astype(float), "Monetary": rng.lognormal(4, 1, 40)})
    path = tmp_path / "rfm.csv"
    frame.to_csv(path, index=False)
    result = segment(path, k=3, out=tmp_path / "seg", report=False)
    assert "Recency" in result.summary["preprocessing"]["constant_columns"]
    predicted = predict(tmp_path / "seg", path)
    pd.testing.assert_frame_equal(predicted.segments, result.segments)
    assert "Recency" not in load_model(tmp_path / "seg").preprocessor.impute_values_


def test_a_model_file_that_imputes_a_constant_column_still_loads():
    prep = Preprocessor().fit(pd.DataFrame({"a": [1.0, 2.0, 3.0, 9.0], "b": [5.0, 5.0, 5.0, 5.0]}))
    record = prep.to_dict()
    assert record["constant_columns"] == ["b"] and "b" not in record["impute_values"]
    record["impute_values"]["b"] = 5.0  # as files written before the fix hold it
    loaded = Preprocessor.from_dict(record)
    assert loaded.impute_values_ == {"a": prep.impute_values_["a"]}
