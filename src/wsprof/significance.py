"""Significance tests for ``wsprof compare``: windows by rank, layer shares by sample counts.

Why these tests, and why the stdlib: a run has few measurement windows (3-10)
and their noise is one-sided (a contended window is slow, never fast), so the
window test is Mann-Whitney U, which assumes no distribution, computed exactly
(the normal approximation is wrong for so few values) from the permutation
distribution of the midrank sum, so ties are exact too. Layer shares come from
one profiled window per variant, so their only spread is sampling: a share is
samples out of a total, compared with the two-proportion test and shown with
Wilson intervals. Both are a few lines on ``math`` and ``statistics``; scipy
would be a large dependency for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

ALPHA = 0.05
"""Two-sided significance level of every test ``compare`` makes."""
EXACT_LIMIT = 60
"""Above this many windows together the U test uses the normal approximation (tie-corrected)."""
_Z95 = NormalDist().inv_cdf(1 - ALPHA / 2)


def _midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..N of ``values``, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def min_p_value(n: int, m: int) -> float:
    """The smallest two-sided p the U test can give for ``n`` and ``m`` windows."""
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2 / math.comb(n + m, n))


def mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value that ``a`` and ``b`` come from one distribution (1.0 if either is empty)."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return 1.0
    ranks = _midranks([*a, *b])
    doubled = [round(2 * r) for r in ranks]  # midranks are halves: doubled, they are integers
    observed = sum(doubled[:n])
    mean = n * (n + m + 1)  # of the doubled rank sum
    if n + m > EXACT_LIMIT:
        return _normal_p(ranks, n, m)
    # ways[k][s]: subsets of k of the pooled ranks whose doubled sum is s.
    ways: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(n)]
    for r in doubled:
        for k in range(min(n, len(doubled)), 0, -1):
            row = ways[k]
            for s, c in ways[k - 1].items():
                row[s + r] = row.get(s + r, 0) + c
    extreme = abs(observed - mean)
    hits = sum(c for s, c in ways[n].items() if abs(s - mean) >= extreme)
    return min(1.0, hits / math.comb(n + m, n))


def _normal_p(ranks: Sequence[float], n: int, m: int) -> float:
    """The large-sample U test, with the variance corrected for ties."""
    total = n + m
    u = sum(ranks[:n]) - n * (n + 1) / 2
    ties: dict[float, int] = {}
    for r in ranks:
        ties[r] = ties.get(r, 0) + 1
    tie_term = sum(t**3 - t for t in ties.values()) / (total * (total - 1))
    variance = n * m / 12 * (total + 1 - tie_term)
    if variance <= 0:
        return 1.0
    z = (abs(u - n * m / 2) - 0.5) / math.sqrt(variance)
    return min(1.0, 2 * (1 - NormalDist().cdf(max(z, 0.0))))


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value that ``x1/n1`` and ``x2/n2`` are one proportion (pooled z test)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = abs(x1 / n1 - x2 / n2) / se
    return min(1.0, 2 * (1 - NormalDist().cdf(z)))


def wilson_interval(x: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of the proportion ``x/n`` (sound near 0 and 1, unlike the Wald one)."""
    if n <= 0:
        return 0.0, 1.0
    p = x / n
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Exact at the ends (rounding would leave 1e-19 above a share of 0).
    lo = 0.0 if x <= 0 else max(0.0, centre - half)
    hi = 1.0 if x >= n else min(1.0, centre + half)
    return lo, hi


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: many layers tested at once must not find noise by chance."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
