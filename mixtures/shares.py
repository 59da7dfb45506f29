"""Shares and quotas: pure functions from group sizes to how much of each group a mixture takes.

A cell is one combination of the balanced dimensions' groups (e.g. (domain, task)); its mass is its size
in the recipe's unit. Targets are marginal shares per dimension; raking (iterative proportional fitting)
finds the cell shares that meet every marginal while staying closest to the natural mix, so a domain keeps
its own mix of tasks unless the task targets say otherwise.
"""

from __future__ import annotations

import math
from collections import defaultdict

Cell = tuple[str, ...]


def normalized(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {g: w / total for g, w in weights.items() if w > 0}


def temperature_shares(sizes: dict[str, float], temperature: float) -> dict[str, float]:
    """A group's share proportional to size^(1/T): T=1 keeps natural sizes, T=inf gives equal shares."""
    present = {g: s for g, s in sizes.items() if s > 0}
    if math.isinf(temperature):
        return normalized({g: 1.0 for g in present})
    return normalized({g: s ** (1.0 / temperature) for g, s in present.items()})


def marginal(cells: dict[Cell, float], dim: int) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for cell, v in cells.items():
        out[cell[dim]] += v
    return dict(out)


def rake(mass: dict[Cell, float], targets: dict[int, dict[str, float]], names: tuple[str, ...] = (),
         tol: float = 1e-10, max_iter: int = 5000, accept: float = 1e-4) -> dict[Cell, float]:
    """Cell shares whose marginal over each dimension index in ``targets`` equals its target shares.

    Raises ValueError when the targets cannot all hold at once (a group whose cells carry no share the other
    dimension allows), naming the dimension that misses.
    """
    total = sum(mass.values())
    shares = {c: m / total for c, m in mass.items() if m > 0}
    if not targets:
        return shares
    for _ in range(max_iter):
        for dim, target in targets.items():
            have = marginal(shares, dim)
            lost = sorted(g for g, t in target.items() if t > 0 and not have.get(g))
            if lost:
                raise _cannot_hold(names[dim] if names else str(dim), lost)
            shares = {c: v * target.get(c[dim], 0.0) / have[c[dim]] for c, v in shares.items()}
            shares = {c: v for c, v in shares.items() if v > 0}  # a group given no share stays out
        worst = max(((abs(marginal(shares, d).get(g, 0.0) - t), d) for d, tg in targets.items() for g, t in tg.items()),
                    default=(0.0, 0))
        if worst[0] < tol:
            break
    if worst[0] < accept:  # a target on the edge of what the cells allow converges slowly; close is enough
        return {c: v for c, v in shares.items() if v > 0}
    dim = names[worst[1]] if names else str(worst[1])
    raise ValueError(f"the targets cannot all hold at once (the {dim} shares miss by {worst[0]:.2g}): some groups "
                     f"of one dimension only occur with groups another dimension gives little or no share; "
                     f"loosen one dimension's targets")


def _cannot_hold(dim: str, groups: list[str]) -> ValueError:
    one = len(groups) == 1
    return ValueError(f"the targets cannot all hold at once: {dim} {', '.join(groups)} "
                      f"ha{'s' if one else 've'} samples only in groups another dimension's targets give no share; "
                      f"give those groups a share or drop {'it' if one else 'them'} from the {dim} targets")


def plan_total(shares: dict[Cell, float], mass: dict[Cell, float], repeats: int, budget: float) -> float:
    """The mixture's total in its unit: the budget (0: no limit) capped so every cell can hold its share with
    at most ``repeats`` copies of each sample."""
    feasible = min(mass[c] * repeats / s for c, s in shares.items() if s > 0)
    return min(budget, feasible) if budget > 0 else feasible


def quotas(shares: dict[Cell, float], total: float) -> dict[Cell, float]:
    return {c: s * total for c, s in shares.items()}
