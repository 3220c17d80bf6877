from __future__ import annotations

import pytest

from bazaar.trust.models import Reputation
from bazaar.trust.reputation import PRIOR_MEAN, PRIOR_WEIGHT, bayesian_score, orders_ended, rates


def test_no_ratings_is_the_prior() -> None:
    assert bayesian_score(0, 0) == PRIOR_MEAN


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ([5], (PRIOR_MEAN * PRIOR_WEIGHT + 5) / (PRIOR_WEIGHT + 1)),
        ([1], (PRIOR_MEAN * PRIOR_WEIGHT + 1) / (PRIOR_WEIGHT + 1)),
        ([5] * 100, (PRIOR_MEAN * PRIOR_WEIGHT + 500) / (PRIOR_WEIGHT + 100)),
    ],
)
def test_bayesian_average(ratings: list[int], expected: float) -> None:
    assert bayesian_score(sum(ratings), len(ratings)) == pytest.approx(expected, abs=1e-4)


def test_a_long_good_record_beats_a_single_five_star() -> None:
    assert bayesian_score(48, 10) > bayesian_score(5, 1)  # eight 5s and two 4s beat a single 5
    assert bayesian_score(5, 1) < 5


def test_rates() -> None:
    rep = Reputation(orders_completed=8, orders_cancelled=2, orders_disputed=1, orders_refunded=0)
    assert rates(rep) == {"completion_rate": 0.8, "cancellation_rate": 0.2, "dispute_rate": 0.1}
    # Refunded orders ended too: they are in every rate's denominator.
    rep = Reputation(orders_completed=1, orders_cancelled=1, orders_disputed=2, orders_refunded=2)
    assert rates(rep) == {"completion_rate": 0.25, "cancellation_rate": 0.25, "dispute_rate": 0.5}
    # Counted by earlier versions when the dispute opened (one still open): never above every ended order.
    rep = Reputation(orders_completed=1, orders_cancelled=0, orders_disputed=3, orders_refunded=0)
    assert rates(rep)["dispute_rate"] == 1.0
    assert rates(None) == {"completion_rate": 0.0, "cancellation_rate": 0.0, "dispute_rate": 0.0}
    # What they are shares of: 0 says the rates say nothing yet.
    assert orders_ended(None) == 0 and orders_ended(rep) == 1
    assert (
        orders_ended(Reputation(orders_completed=1, orders_cancelled=1, orders_disputed=2, orders_refunded=2))
        == 4
    )
