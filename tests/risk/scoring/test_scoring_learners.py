"""The learners, the vectors, the signed states and drift detection, without a database
(seeded, deterministic)."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.risk.scoring.drift import DriftMonitor, Reference, population_stability_index
from billfold.risk.scoring.learners import (
    REFERENCE_SIZE_MAX,
    AnomalyModel,
    Reservoir,
    SupervisedModel,
)
from billfold.risk.scoring.state import StateCodec, UnusableStateError, derive_signing_key
from billfold.risk.scoring.training import RunEvaluation, finish, learn_anomaly, learn_supervised
from billfold.risk.scoring.vectors import FEATURES_MAX, vectorize
from risk.scoring.scoring_support import auc, labelled_set, movement_features

KEY = derive_signing_key(b"k" * 32)


def _trained_supervised(seed: int = 7, count: int = 3000) -> SupervisedModel:
    model = SupervisedModel()
    learn_supervised(
        model,
        [(vectorize(features), fraud) for features, fraud in labelled_set(seed, count)],
        RunEvaluation(),
        Reservoir(size=100, seed=1),
    )
    return model


def test_the_supervised_model_separates_fraud_from_legitimate_movements() -> None:
    model = _trained_supervised()
    held_out = labelled_set(seed=99, count=1000)
    pairs = [(model.score(vectorize(features)), fraud) for features, fraud in held_out]
    assert auc(pairs) > 0.95
    assert all(0.0 <= score <= 1.0 for score, _ in pairs)
    flagged = [fraud for score, fraud in pairs if score >= 0.5]
    assert sum(flagged) / len(flagged) > 0.8  # precision well above the 15% base rate


def test_an_untrained_model_is_no_better_than_chance() -> None:
    model = SupervisedModel()
    pairs = [(model.score(vectorize(f)), fraud) for f, fraud in labelled_set(seed=3, count=400)]
    assert auc(pairs) == pytest.approx(0.5, abs=0.01)


def test_the_anomaly_detector_scores_an_outlier_above_typical_movements() -> None:
    rng = random.Random(11)
    typical = [vectorize(movement_features(rng, fraud=False)) for _ in range(2000)]
    model = AnomalyModel(seed=5)
    evaluation, reservoir = RunEvaluation(), Reservoir(size=REFERENCE_SIZE_MAX, seed=2)
    learn_anomaly(model, typical, evaluation, reservoir)
    metrics = finish(model, reservoir, evaluation)
    assert metrics["reference"] is not None
    outlier = vectorize(
        {"amount": 5_000_000, "hour_of_day": 3, "new_device": True, "velocity_count_user_1h": 40}
    )
    normal_scores = sorted(
        model.score(vectorize(movement_features(rng, fraud=False))) for _ in range(200)
    )
    median = normal_scores[len(normal_scores) // 2]
    assert model.score(outlier) > 0.95 > median
    assert 0.2 < median < 0.8  # normalized: a typical movement sits mid-distribution


def test_vectors_are_log_scaled_one_hot_and_bounded() -> None:
    vector = vectorize(
        {"amount": 999, "refund": -9, "night": True, "kind": "p2p", "x": None, "z": float("nan")}
    )
    assert vector["amount"] == pytest.approx(6.9077552)
    assert vector["refund"] == pytest.approx(-2.302585)
    assert vector["night"] == 1.0 and vector["kind=p2p"] == 1.0
    assert "x" not in vector and "z" not in vector
    assert len(vectorize({f"f{i}": i for i in range(1000)})) == FEATURES_MAX


@given(
    st.dictionaries(
        st.text(max_size=20),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=200),
        max_size=300,
    )
)
def test_any_features_vectorize_to_finite_floats(features: dict[str, object]) -> None:
    vector = vectorize(features)  # type: ignore[arg-type]
    assert len(vector) <= FEATURES_MAX
    assert all(isinstance(value, float) and value == value for value in vector.values())
    model = _SHARED_MODEL
    assert 0.0 <= model.score(vector) <= 1.0


_FRESH_PROCESS = """
import sys

import billfold.app, billfold.worker
from billfold.risk.scoring.learners import import_river
from billfold.risk.scoring.state import StateCodec

heavy = sorted(name for name in ("river", "scipy") if name in sys.modules)
state = sys.stdin.buffer.read()
model = StateCodec(bytes.fromhex(sys.argv[1])).load(state, sys.argv[2])  # unpickling imports
score = model.score({"amount_log": 1.0})
anomaly_before = "river.anomaly" in sys.modules
import_river()  # what the registry and training run on a thread before they need river
print(heavy, repr(score), anomaly_before, "river.anomaly" in sys.modules)
"""


def test_the_server_and_worker_start_without_river_and_still_load_a_model() -> None:
    """river (and scipy.stats under it) is imported when a model is made or unpickled, not
    when `billfold serve` or `billfold worker` start: it was 2.6 of the worker's 6 s of
    imports on a slow machine. A model stored by another process still loads and scores
    (unpickling imports what it names), and `import_river` brings in what the other kind
    of model needs."""
    model = _trained_supervised(count=200)
    state, digest = StateCodec(KEY).dump(model)
    ran = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, KEY.hex(), digest],
        input=state,
        capture_output=True,
        check=True,
        timeout=120,
    )
    heavy, score, anomaly_before, anomaly_after = ran.stdout.decode().rsplit(maxsplit=3)
    assert heavy == "[]", "importing the server and the worker imported river or scipy"
    assert float(score) == model.score({"amount_log": 1.0})
    assert (anomaly_before, anomaly_after) == ("False", "True")


_SHARED_MODEL = _trained_supervised(count=300)


def test_a_state_round_trips_and_a_tampered_or_foreign_one_is_refused() -> None:
    codec = StateCodec(KEY)
    model = _trained_supervised(count=200)
    state, digest = codec.dump(model)
    assert digest.startswith("hmac-sha256:")
    loaded = codec.load(state, digest)
    probe = vectorize(labelled_set(seed=1, count=1)[0][0])
    assert loaded.score(probe) == model.score(probe)
    tampered = state[:-2] + bytes([state[-2] ^ 1]) + state[-1:]
    with pytest.raises(UnusableStateError):
        codec.load(tampered, digest)
    with pytest.raises(UnusableStateError):  # signed under another key
        StateCodec(derive_signing_key(b"other" * 8)).load(state, digest)
    with pytest.raises(UnusableStateError):  # a checksum where a signature is expected
        codec.load(state, StateCodec(None).digest(state))
    evil = pickle.dumps(_Evil())
    with pytest.raises(UnusableStateError):  # even correctly signed, os.system is refused
        codec.load(evil, codec.digest(evil))


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


def test_drift_is_detected_when_scores_shift_and_not_when_they_do_not() -> None:
    rng = random.Random(21)
    reference = Reference.of([rng.betavariate(2, 8) for _ in range(1000)])
    assert reference is not None
    stable = DriftMonitor(reference, window=500, psi_max=0.25)
    shifted = DriftMonitor(reference, window=500, psi_max=0.25)
    stable_checks = [stable.add(rng.betavariate(2, 8)) for _ in range(2000)]
    shifted_checks = [shifted.add(rng.betavariate(5, 5)) for _ in range(2000)]
    stable_done = [check for check in stable_checks if check is not None]
    shifted_done = [check for check in shifted_checks if check is not None]
    assert len(stable_done) == len(shifted_done) == 4
    assert not any(check.drifted for check in stable_done)
    assert all(check.drifted for check in shifted_done)
    assert max(check.psi for check in stable_done) < 0.1


def test_without_a_reference_the_first_window_becomes_it() -> None:
    rng = random.Random(4)
    monitor = DriftMonitor(None, window=200, psi_max=0.25)
    assert [monitor.add(rng.random()) for _ in range(200)] == [None] * 200
    assert monitor.reference is not None
    checks = [monitor.add(rng.random() ** 4) for _ in range(200)]
    assert checks[-1] is not None and checks[-1].drifted


def test_a_reference_survives_json_and_a_malformed_one_is_none() -> None:
    reference = Reference.of([i / 100 for i in range(100)])
    assert reference is not None
    assert Reference.from_json(reference.to_json()) == reference
    assert population_stability_index(reference, [i / 100 for i in range(100)]) < 0.01
    assert Reference.from_json({"edges": "x"}) is None
    assert Reference.from_json(None) is None
    assert Reference.of([0.5] * 100) is None
