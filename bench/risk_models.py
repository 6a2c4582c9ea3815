"""Risk model scoring latency: what one `Scorer.score(features)` costs on the decision
path, for the supervised model (StandardScaler | LogisticRegression) and the anomaly
detector (MinMaxScaler | HalfSpaceTrees, 10 trees of height 8), both trained on a seeded
synthetic workload of 5,000 movements; beside the reference measured in the same run:
`vectorize(features)` alone (the cost every model shares).

    uv run python bench/risk_models.py --seconds 3

The budget: well under 0.5 ms per score (the whole decision has a p99 of 5 ms). The last
line is one JSON object: `supervised_p50_us`, `supervised_p99_us`, `anomaly_p50_us`,
`anomaly_p99_us`, `vectorize_p50_us`, and `supervised_ratio` / `anomaly_ratio` = the p99
over the 500 µs budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable

from _common import percentile, print_table
from billfold.risk.scoring.learners import (
    REFERENCE_SIZE_MAX,
    AnomalyModel,
    Reservoir,
    SupervisedModel,
)
from billfold.risk.scoring.training import RunEvaluation, finish, learn_anomaly, learn_supervised
from billfold.risk.scoring.vectors import vectorize
from billfold.risk.types import FeatureValue

BUDGET_US = 500.0
TRAINING_SIZE = 5000


def _features(rng: random.Random, *, fraud: bool) -> dict[str, FeatureValue]:
    night = rng.random() < (0.8 if fraud else 0.1)
    return {
        "amount": int(rng.lognormvariate(11.0 if fraud else 8.0, 0.6)),
        "amount_zscore": rng.gauss(3.0 if fraud else 0.0, 1.0),
        "hour_of_day": rng.randrange(0, 6) if night else rng.randrange(8, 22),
        "new_device": rng.random() < (0.75 if fraud else 0.05),
        "new_payee": rng.random() < (0.6 if fraud else 0.2),
        "account_age_days": rng.randrange(0, 30) if fraud else rng.randrange(0, 2000),
        "kyc_tier": rng.randrange(0, 3),
        "velocity_count_user_1m": rng.randrange(0, 4),
        "velocity_count_user_1h": rng.randrange(3, 12) if fraud else rng.randrange(0, 3),
        "velocity_amount_user_24h": rng.randrange(0, 10**7),
        "velocity_count_device_24h": rng.randrange(0, 30),
        "velocity_count_ip_1h": rng.randrange(0, 10),
        "failed_logins_24h": rng.randrange(0, 5),
        "ip_country_mismatch": rng.random() < 0.1,
        "kind": rng.choice(["p2p", "withdrawal", "merchant_payment"]),
        "currency": rng.choice(["EUR", "USD"]),
        "ip_country": rng.choice(["FR", "DE", "US", None]),
    }


def _time_calls(call: Callable[[], object], seconds: float) -> list[float]:
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and len(samples) < 2_000_000:
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="Each phase's duration.")
    arguments = parser.parse_args()
    rng = random.Random(42)
    workload = [
        (_features(rng, fraud=(fraud := rng.random() < 0.1)), fraud) for _ in range(TRAINING_SIZE)
    ]
    supervised, detector = SupervisedModel(), AnomalyModel(seed=1)
    vectors = [(vectorize(features), fraud) for features, fraud in workload]
    learn_supervised(supervised, vectors, RunEvaluation(), Reservoir(size=100, seed=1))
    reservoir = Reservoir(size=REFERENCE_SIZE_MAX, seed=2)
    learn_anomaly(detector, [v for v, _ in vectors], RunEvaluation(), reservoir)
    finish(detector, reservoir, RunEvaluation())
    probes = [features for features, _ in workload[:1000]]
    # As `billfold serve` runs: what exists after startup frozen out of the collector's
    # sight, young collections every 50,000 allocations (`gc_gen0_threshold`).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    cursor = iter(range(10**12))

    def probe() -> dict[str, FeatureValue]:
        return probes[next(cursor) % len(probes)]

    phases = {
        "vectorize": _time_calls(lambda: vectorize(probe()), arguments.seconds),
        "supervised": _time_calls(lambda: supervised.score(vectorize(probe())), arguments.seconds),
        "anomaly": _time_calls(lambda: detector.score(vectorize(probe())), arguments.seconds),
    }
    figures: dict[str, object] = {"bench": "risk_models"}
    rows = []
    for name, samples in phases.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        figures[f"{name}_p50_us"] = round(p50, 2)
        figures[f"{name}_p99_us"] = round(p99, 2)
        rows.append(
            (name, f"{len(samples):,}", f"{p50:.1f}", f"{p99:.1f}", f"{p99 / BUDGET_US:.3f}")
        )
    figures["supervised_ratio"] = round(percentile(phases["supervised"], 0.99) / BUDGET_US, 4)
    figures["anomaly_ratio"] = round(percentile(phases["anomaly"], 0.99) / BUDGET_US, 4)
    print_table(
        "Risk model scoring (µs per call; ratio = p99 / 500 µs budget)",
        ["phase", "calls", "p50 µs", "p99 µs", "p99 / budget"],
        rows,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
