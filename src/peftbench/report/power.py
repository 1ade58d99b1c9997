"""How many test examples or seeds would tell two methods apart: normal power approximations.

Test examples (one seed, paired on the same examples): McNemar's test, normal approximation
(Connor 1987). With ψ the fraction of examples only one method gets right and δ the
accuracy difference (both as observed), a two-sided test at level α' with power 1 − β needs

    n = (z[1 − α'/2] · √ψ + z[1 − β] · √(ψ − δ²))² / δ²

examples, α' = α / m being the Bonferroni level over the m comparisons of the experiment
(the first step of Holm's procedure, so a conservative count). Seeds (a t test on the per-seed
differences, normal approximation): k = ((z[1 − α'/2] + z[1 − β]) · s / δ)², s the std of the
per-seed differences. Both assume the observed δ, ψ and s are the true ones.
"""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_POWER = 0.8
FORMULA = (
    "n = (z[1 − α'/2]·√ψ + z[1 − β]·√(ψ − δ²))² / δ², McNemar's test in the normal "
    "approximation (Connor 1987), with δ the observed accuracy difference, ψ the observed "
    "fraction of examples only one of the two methods gets right, α' = α / m (Bonferroni over "
    "the m comparisons: conservative for Holm) and power 1 − β"
)


def power_wording(seeds: int, power: float = DEFAULT_POWER) -> str:
    """'80 % power', or with several seeds '80 % power that all 3 seeds find it': a pair is
    significant only when every seed is, so each seed's test is sized for power ** (1/seeds)."""
    if seeds <= 1:
        return f"{100 * power:g} % power"
    return f"{100 * power:g} % power that all {seeds} seeds find it"


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def examples_needed(
    difference: float,
    discordant: float,
    alpha: float,
    comparisons: int = 1,
    power: float = DEFAULT_POWER,
    seeds: int = 1,
) -> int | None:
    """Test examples per seed for McNemar's test to find `difference` significant on every one
    of `seeds` seeds with probability `power` (each seed's test at power ** (1/seeds), the
    seeds independent); None when it cannot (no difference, or the discordance cannot produce
    it)."""
    delta, psi = abs(difference), discordant
    if delta <= 0 or psi <= 0 or psi - delta**2 < 0 or delta > psi:
        return None
    level = alpha / max(comparisons, 1)
    per_seed = power ** (1 / max(seeds, 1))
    root = _z(1 - level / 2) * math.sqrt(psi) + _z(per_seed) * math.sqrt(psi - delta**2)
    return math.ceil(root**2 / delta**2)


def seeds_needed(
    difference: float,
    seed_std: float,
    alpha: float,
    comparisons: int = 1,
    power: float = DEFAULT_POWER,
) -> int | None:
    """Seeds for a test on the per-seed differences to find `difference`; None without spread."""
    delta = abs(difference)
    if delta <= 0 or seed_std <= 0:
        return None
    level = alpha / max(comparisons, 1)
    return max(2, math.ceil(((_z(1 - level / 2) + _z(power)) * seed_std / delta) ** 2))
