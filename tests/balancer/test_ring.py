"""The hash ring behind consistent-hashing and prefix-affinity shares the hash space out by weight (in process:
the share of the 2^32 hash space each endpoint owns is exact arithmetic, no sampling)."""

from __future__ import annotations

import random

import pytest

from servegate.proxy.balancer.algorithms import Ring
from servegate.proxy.balancer.endpoint import Endpoint


def owned(ring: Ring) -> list[float]:
    """Each endpoint's share of the hash space (a key lands on the first point at or after its hash)."""
    shares = [0.0] * len(ring.endpoints)
    for i, h in enumerate(ring.hashes):
        prev = ring.hashes[i - 1] if i else ring.hashes[-1] - 2**32
        shares[ring.owners[i]] += (h - prev) / 2**32
    return shares


@pytest.mark.parametrize("weights", [(100, 100, 100), (100, 50, 150)])
def test_ring_shares_follow_the_weights(weights):
    rng = random.Random(3)
    worst = 0.0
    for _ in range(20):
        ports = rng.sample(range(20000, 60000), 3)
        eps = [Endpoint(f"127.0.0.1:{p}", "127.0.0.1", "127.0.0.1", p, w) for p, w in zip(ports, weights, strict=True)]
        shares = owned(Ring(eps, 10000))
        worst = max(worst, *(abs(s / (w / sum(weights)) - 1) for s, w in zip(shares, weights, strict=True)))
    print(f"\nworst share off its weight: {worst:.1%}")
    assert worst <= 0.08


def test_ring_shares_for_look_alike_target_names():
    for names in (("vllm-1", "vllm-2", "vllm-3"), ("10.0.0.1", "10.0.0.2", "10.0.0.3")):
        eps = [Endpoint(f"{n}:8000", n, n, 8000, 100) for n in names]
        shares = owned(Ring(eps, 10000))
        assert max(shares) <= 1.08 * min(shares), (names, shares)
