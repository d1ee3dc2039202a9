"""The paper's claims, checked against the rows of the comparison table (`compare_table`).

Each claim is a conjunction of comparisons between two rows' metrics. A comparison is True, False,
or None when a row or metric is missing (robot or method not run, skipped, failed, or a metric the
model does not have). The verdict is "not reproduced" if any comparison is False, else "not
measured" if any is None (or there is none), else "reproduced". Pure functions only.
"""

import dataclasses
from collections.abc import Callable

from .compare_table import is_number

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURED = "not measured"

GMMS = ("avips", "vanilla_gmm")
SINGLE_GAUSSIANS = ("single_gaussian", "single_gaussian_noproj")
FOUR_DOF = "valkyrie_arm"

Rows = dict[tuple[str, str], dict]


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of a claim: `holds` is True, False or None (not measured)."""

    holds: bool | None
    text: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim of the paper and what this run says about it."""

    statement: str
    criterion: str
    verdict: str
    checks: tuple[Check, ...]


def index_rows(rows: list[dict]) -> Rows:
    """{(robot, method): row} of the rows whose status is "ok"."""
    return {(r["robot"], r["method"]): r for r in rows if r.get("status", "ok") == "ok"}


def metric(rows: Rows, robot: str, method: str, key: str) -> float | None:
    """The finite value of `key` in the (robot, method) row, else None."""
    value = rows.get((robot, method), {}).get(key)
    return float(value) if is_number(value) else None


def verdict(checks: tuple[Check, ...]) -> str:
    """The verdict of a conjunction of checks (see the module docstring)."""
    if any(c.holds is False for c in checks):
        return NOT_REPRODUCED
    if not checks or any(c.holds is None for c in checks):
        return NOT_MEASURED
    return REPRODUCED


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _mark(holds: bool | None) -> str:
    return {True: "yes", False: "no", None: "not measured"}[holds]


def compare(
    rows: Rows, key: str, robot: str, a: str, b: str, better: Callable[[float, float], bool]
) -> Check:
    """Whether method `a` is better than `b` in `key` on `robot` (`better(value_a, value_b)`)."""
    va, vb = metric(rows, robot, a, key), metric(rows, robot, b, key)
    holds = None if va is None or vb is None else bool(better(va, vb))
    return Check(holds, f"{robot}: {key} {a} {_fmt(va)} vs {b} {_fmt(vb)}: {_mark(holds)}")


def lower(a: float, b: float) -> bool:
    return a < b


def higher(a: float, b: float) -> bool:
    return a > b


def robots_of(rows: Rows) -> list[str]:
    """The robots with at least one "ok" row, in first-seen order."""
    return list(dict.fromkeys(robot for robot, _ in rows))


def best_method(rows: Rows, robot: str, methods: tuple[str, ...], key: str) -> str | None:
    """Among `methods` with a value of `key` on `robot`, the one with the lowest value."""
    found = [(metric(rows, robot, m, key), m) for m in methods]
    found = [(v, m) for v, m in found if v is not None]
    return min(found)[1] if found else None


ALL_ROBOTS = ("panda", "valkyrie", "valkyrie_arm", "atlas", "talos")
ERROR = "position_error_mean_mm"


def missing(what: str) -> Check:
    """A not-measured check saying what is missing."""
    return Check(None, f"{what}: not measured")


def claim_lower_error_than_flow_and_gan(rows: Rows) -> Claim:
    checks = tuple(
        compare(rows, ERROR, robot, "avips", other, lower)
        for robot in ("panda", "valkyrie")
        for other in ("flow", "gan")
    )
    return Claim(
        "aVIPS has a lower position error than the flow and the GAN on Panda and Valkyrie",
        "mean position error: avips < flow and avips < gan (with discriminator), on panda and "
        "valkyrie",
        verdict(checks),
        checks,
    )


def claim_flow_better_on_atlas(rows: Rows) -> Claim:
    checks = (compare(rows, ERROR, "atlas", "flow", "avips", lower),)
    return Claim(
        "The flow is better than aVIPS on Atlas",
        "mean position error on atlas: flow < avips",
        verdict(checks),
        checks,
    )


def _diversity_check(rows: Rows, robot: str) -> Check:
    """MMD lower where both rows have it, else mean pairwise joint distance higher."""
    if all(metric(rows, robot, m, "mmd") is not None for m in ("avips", "vanilla_gmm")):
        return compare(rows, "mmd", robot, "avips", "vanilla_gmm", lower)
    return compare(rows, "mean_pairwise_joint_distance", robot, "avips", "vanilla_gmm", higher)


def claim_more_diverse_than_vanilla(rows: Rows, robots=ALL_ROBOTS) -> Claim:
    checks = []
    for robot in robots:
        checks.append(compare(rows, "entropy", robot, "avips", "vanilla_gmm", higher))
        checks.append(_diversity_check(rows, robot))
    checks = tuple(checks)
    return Claim(
        "aVIPS has a higher entropy and is more diverse than the vanilla GMM",
        "on every robot: entropy avips > vanilla_gmm, and MMD to reference IK solutions "
        "avips < vanilla_gmm (mean pairwise joint distance avips > vanilla_gmm where MMD is not "
        "measured, e.g. TALOS)",
        verdict(checks),
        checks,
    )


def claim_higher_elbo_on_atlas(rows: Rows) -> Claim:
    checks = (compare(rows, "elbo", "atlas", "avips", "vanilla_gmm", higher),)
    return Claim(
        "aVIPS reaches a higher ELBO than the vanilla GMM on Atlas",
        "ELBO on atlas: avips > vanilla_gmm",
        verdict(checks),
        checks,
    )


def _slots_check(rows: Rows, robot: str) -> Check:
    used = metric(rows, robot, "avips", "num_active_slots")
    k_max = metric(rows, robot, "avips", "max_components")
    if used is None or k_max is None:
        return missing(f"{robot}: avips active slots vs K_max")
    holds = used < k_max
    text = f"{robot}: avips active slots {used:.0f} < K_max {k_max:.0f}: {_mark(holds)}"
    return Check(holds, text)


def claim_pruning_gives_smaller_models(rows: Rows, robots=ALL_ROBOTS) -> Claim:
    checks = []
    for robot in robots:
        checks.append(_slots_check(rows, robot))
        checks.append(compare(rows, "num_parameters_in_use", robot, "avips", "vanilla_gmm", lower))
    checks = tuple(checks)
    return Claim(
        "Pruning gives smaller models",
        "on every robot: aVIPS ends with fewer active slots than K_max, and fewer parameters in "
        "use (those of its active slots) than the vanilla GMM (all K_max slots)",
        verdict(checks),
        checks,
    )


def _best_vs(rows: Rows, robot: str, group: tuple[str, ...], others: tuple[str, ...]) -> Check:
    """The best (lowest error) method of `group` against the best of `others` on `robot`."""
    best, rival = best_method(rows, robot, group, ERROR), best_method(rows, robot, others, ERROR)
    if best is None or rival is None:
        rivals = "/".join(others) or "any other method"
        return missing(f"{robot}: best of {'/'.join(group)} vs best of {rivals}")
    return compare(rows, ERROR, robot, best, rival, lower)


def claim_single_gaussian_best_on_4dof(rows: Rows) -> Claim:
    others = tuple(m for (r, m) in rows if r == FOUR_DOF and m not in SINGLE_GAUSSIANS)
    checks = (_best_vs(rows, FOUR_DOF, SINGLE_GAUSSIANS, others),)
    return Claim(
        "The single Gaussian is best on the 4-DOF Valkyrie arm",
        "mean position error on valkyrie_arm: the better single Gaussian (with or without the "
        "projection) < the best of every other method measured there",
        verdict(checks),
        checks,
    )


def claim_gmms_beat_single_gaussian(rows: Rows, robots=ALL_ROBOTS) -> Claim:
    checks = tuple(
        _best_vs(rows, robot, GMMS, SINGLE_GAUSSIANS) for robot in robots if robot != FOUR_DOF
    )
    return Claim(
        "GMMs beat the single Gaussian on the other robots",
        "on every robot but valkyrie_arm, mean position error: the better GMM (avips or "
        "vanilla_gmm) < the better single Gaussian",
        verdict(checks),
        checks,
    )


def _components_check(rows: Rows, robot: str) -> Check:
    mean = metric(rows, robot, "avips", "active_components_mean")
    if mean is None:
        return missing(f"{robot}: avips active components per context")
    holds = 2.0 <= mean <= 3.0
    text = f"{robot}: 2 <= avips active components per context {mean:.3g} <= 3: {_mark(holds)}"
    return Check(holds, text)


def claim_two_to_three_components(rows: Rows, robots=ALL_ROBOTS) -> Claim:
    checks = tuple(_components_check(rows, robot) for robot in robots if robot != FOUR_DOF)
    return Claim(
        "2-3 components are used per context",
        "on every robot but valkyrie_arm: 2 <= mean number of aVIPS components with weight "
        "> 1% per test context <= 3",
        verdict(checks),
        checks,
    )


def evaluate_claims(rows: list[dict], robots: tuple[str, ...] = ALL_ROBOTS) -> list[Claim]:
    """The eight claims of the paper, each with its verdict, from the table's rows."""
    ok = index_rows(rows)
    return [
        claim_lower_error_than_flow_and_gan(ok),
        claim_flow_better_on_atlas(ok),
        claim_more_diverse_than_vanilla(ok, robots),
        claim_higher_elbo_on_atlas(ok),
        claim_pruning_gives_smaller_models(ok, robots),
        claim_single_gaussian_best_on_4dof(ok),
        claim_gmms_beat_single_gaussian(ok, robots),
        claim_two_to_three_components(ok, robots),
    ]


def claims_markdown(claims: list[Claim]) -> str:
    """A numbered list: statement, verdict in bold, the criterion, and every check's numbers."""
    lines = []
    for i, claim in enumerate(claims, 1):
        lines.append(f"{i}. {claim.statement}: **{claim.verdict}**.")
        lines.append(f"   - criterion: {claim.criterion}")
        lines.extend(f"   - {check.text}" for check in claim.checks)
    return "\n".join(lines)
