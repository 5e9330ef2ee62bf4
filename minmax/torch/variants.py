r"""The paper's training variants as data: one table that the step, the command line, the benchmarks and
the documentation all read.

Each row of :data:`FAMILIES` says what a family of variant names means, in four independent choices:

* **attack** — ``"pgd"`` (PGD-K, or PGD-K' when the name gives K') or ``"fgsm"`` (FGSM with random start,
  step 1.25 ε: FAST [2]_);
* **restarts** — how many restarts the attack runs: a fixed number, or None for the name's count m
  (:math:`m_t` under a schedule);
* **sets** — which perturbation sets the m parameter gradients are taken at: ``"each"`` (one set per
  restart), ``"worst"`` (the per-sample worst over the restarts: one set), ``"comb"`` (k sets assembled from
  two attacks by random bit-vectors, Appendix B.4.1 of [1]_);
* **rule** — how the gradients become the update (:data:`minmax.torch.backward.RULES`): ``"single"``
  (the one set's gradient), ``"min-norm"`` (the gradient of lowest norm), ``"danskin"`` (the steepest descent
  direction :math:`-M\alpha^*/\|M\alpha^*\|` of Theorem 2);
* **schedule** — ``"constant"``, or ``"linear-decay"``: m falls linearly from the name's m0 to 1 over
  training (Appendix B.4).

The family's regular expression names its numbers: ``m`` (restarts or batches), ``steps`` (K') and
``decay`` (the ``-1/t`` suffix). :func:`parse_variant` matches a name against every row; a
:class:`VariantSpec` is checked against its row. Adding a variant that combines these choices differently
is one new row; the training step (:class:`minmax.torch.descent.DescentStep`), ``python -m
experiments.train --help``, ``python -m benchmarks step`` and the table in the documentation follow.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding actual descent directions for adversarial
   training." ICLR 2023.
.. [2] Wong, Rice, Kolter. "Fast is better than free: revisiting adversarial training." ICLR 2020.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from minmax.torch._checks import positive_int
from minmax.torch.backward import RULES

__all__ = ["FAMILIES", "VARIANTS", "Family", "VariantSpec", "parse_variant", "variant_help", "variant_names"]

ATTACKS = ("pgd", "fgsm")
SETS = ("each", "worst", "comb")
SCHEDULES = ("constant", "linear-decay")
_GROUPS = {"m", "steps", "decay"}


@dataclass(frozen=True)
class Family:
    r"""One row of :data:`FAMILIES`: what every name of a variant family means.

    Attributes
    ----------
    name : str
        The family, e.g. ``"ddi-comb"``.
    pattern : str
        Regular expression of its names (matched whole, lower case), with named groups ``m``, ``steps``
        and ``decay`` for the numbers a name carries.
    forms : tuple of str
        The spellings as the help shows them, e.g. ``("ddi-comb-K",)``.
    examples : tuple of str
        Name templates with ``{m}`` and ``{steps}`` placeholders (:func:`variant_names`).
    attack : {"pgd", "fgsm"}
        The inner maximization.
    restarts : int or None
        Restarts of the attack; None: the name's count m (or :math:`m_t` under the schedule).
    sets : {"each", "worst", "comb"}
        Where the gradients are taken (module notes).
    rule : {"single", "min-norm", "danskin"}
        How the gradients become the update (:func:`minmax.torch.backward.write_direction`).
    schedule : {"constant", "linear-decay"}
        How m evolves over training.
    inner, update : str
        One-line descriptions of the inner maximization and of the update, for the help and the docs.

    Raises
    ------
    ValueError
        A choice outside its list, a pattern that does not compile or names a group other than ``m``,
        ``steps`` and ``decay``, a ``"single"`` rule with more than one set, or a fixed restart count
        below 1.
    """

    name: str
    pattern: str
    forms: tuple
    examples: tuple
    attack: str
    restarts: int | None
    sets: str
    rule: str
    schedule: str
    inner: str
    update: str

    def __post_init__(self):
        for value, choices, what in ((self.attack, ATTACKS, "attack"), (self.sets, SETS, "sets"),
                                     (self.rule, RULES, "rule"), (self.schedule, SCHEDULES, "schedule")):
            if value not in choices:
                raise ValueError(f"Family {self.name!r}: {what} must be one of {choices}, got {value!r}")
        groups = set(re.compile(self.pattern).groupindex)
        if not groups <= _GROUPS:
            raise ValueError(f"Family {self.name!r}: the pattern may name only the groups {sorted(_GROUPS)}, "
                             f"got {sorted(groups)}")
        if self.restarts is not None:
            positive_int(self.restarts, f"Family {self.name!r}: restarts")
        elif "m" not in groups:
            raise ValueError(f"Family {self.name!r}: restarts=None takes the count from the name, but the "
                             f"pattern has no group 'm'")
        if self.rule == "single" and (self.sets == "comb" or "m" in groups and self.sets == "each"):
            raise ValueError(f"Family {self.name!r}: the 'single' rule needs one gradient set (sets 'worst' "
                             f"or a single restart)")
        if self.schedule == "linear-decay" and self.restarts is not None:
            raise ValueError(f"Family {self.name!r}: the linear-decay schedule varies the restarts m")

    @property
    def counted(self) -> bool:
        """Whether the names carry a count m (``ddi-10``)."""
        return "m" in re.compile(self.pattern).groupindex

    @property
    def takes_steps(self) -> bool:
        """Whether the names carry their own number of attack steps K' (``pgd-70``)."""
        return "steps" in re.compile(self.pattern).groupindex

    @property
    def takes_decay(self) -> bool:
        """Whether the names may ask for the 1/t step decay (``pgd-70-1/t``)."""
        return "decay" in re.compile(self.pattern).groupindex


def _row(name, pattern, forms, examples, attack, restarts, sets, rule, inner, update,
         schedule="constant") -> tuple[str, Family]:
    return name, Family(name, pattern, forms, examples, attack, restarts, sets, rule, schedule, inner, update)


#: The variant families of the paper, by name. K is the step's ``steps`` (7 in the paper).
FAMILIES = dict([
    _row("pgd", r"pgd", ("pgd",), ("pgd",), "pgd", 1, "each", "single",
         "one PGD-K attack (Madry et al.)", "its gradient g"),
    _row("pgd-max", r"pgd-max-(?P<m>\d+)", ("pgd-max-M",), ("pgd-max-{m}",), "pgd", None, "worst", "single",
         "M PGD-K restarts, the per-sample worst kept (one batch)", "its gradient g"),
    _row("pgd-min", r"pgd-min-(?P<m>\d+)", ("pgd-min-M",), ("pgd-min-{m}",), "pgd", None, "each", "min-norm",
         "M PGD-K restarts (M batches)", "the batch gradient g_i of lowest norm"),
    _row("pgd-long", r"pgd-(?P<steps>\d+)(?P<decay>-1/t)?", ("pgd-K'", "pgd-K'-1/t"),
         ("pgd-{steps}", "pgd-{steps}-1/t"), "pgd", 1, "each", "single",
         "one PGD with K' steps (e.g. pgd-70); -1/t: 1/t step decay after the usual K + 1 steps",
         "its gradient g"),
    _row("fast", r"fast", ("fast",), ("fast",), "fgsm", 1, "each", "single",
         "FGSM with random start, step 1.25 ε (FAST, 10/255 at ε = 8/255)", "its gradient g"),
    _row("fast-max", r"fast-max-(?P<m>\d+)", ("fast-max-M",), ("fast-max-{m}",), "fgsm", None, "worst",
         "single", "M FGSM restarts, the per-sample worst kept (one batch)", "its gradient g"),
    _row("ddi", r"ddi-(?P<m>\d+)", ("ddi-M",), ("ddi-{m}",), "pgd", None, "each", "danskin",
         "M PGD-K restarts (M batches; the paper's Algorithm 1, ddi-10 in the paper)",
         "Danskin direction −Mα*/‖Mα*‖ (Theorem 2)"),
    _row("fast-ddi", r"fast-ddi-(?P<m>\d+)", ("fast-ddi-M",), ("fast-ddi-{m}",), "fgsm", None, "each",
         "danskin", "M FGSM restarts (M batches)", "Danskin direction −Mα*/‖Mα*‖"),
    _row("ddi-comb", r"ddi-comb-(?P<m>\d+)", ("ddi-comb-K",), ("ddi-comb-{m}",), "pgd", 2, "comb", "danskin",
         "two PGD-K attacks per sample, K batches from random bit-vectors (Appendix B.4.1)",
         "Danskin direction over the K batch gradients"),
    _row("ddi-decay", r"ddi-decay-(?P<m>\d+)", ("ddi-decay-M0",), ("ddi-decay-{m}",), "pgd", None, "each",
         "danskin", "m_t PGD-K restarts, m_t falling linearly from M0 to 1 over training (Appendix B.4)",
         "Danskin direction −Mα*/‖Mα*‖", schedule="linear-decay"),
])

#: The family names, in table order.
VARIANTS = tuple(FAMILIES)

_COMPILED = {name: re.compile(f.pattern) for name, f in FAMILIES.items()}
_ACCEPTED = (", ".join(form for f in FAMILIES.values() for form in f.forms)
             + " (M, K, K', M0 integers >= 1, e.g. ddi-10, pgd-70-1/t)")


@dataclass(frozen=True)
class VariantSpec:
    """A parsed variant name (made by :func:`parse_variant`; a hand-made one is checked the same way).

    Attributes
    ----------
    name : str
        The name as given, e.g. ``"ddi-10"``.
    family : str
        One of :data:`VARIANTS`, a key of :data:`FAMILIES`.
    m : int
        The name's count: restarts (pgd-max, pgd-min, fast-max, ddi, fast-ddi), batches k (ddi-comb) or m0
        (ddi-decay); 1 for a family whose names carry no count (pgd, fast, pgd-long).
    steps : int or None
        K' for a family whose names carry it (pgd-long), else None (the step's ``steps``).
    decay : bool
        1/t step decay after step K + 1 (pgd-K'-1/t).

    Raises
    ------
    TypeError, ValueError
        An unknown family, a count below 1, m > 1 for a family without a count, ``steps`` given for a
        family without K' (or missing there), or ``decay`` for a family without it.
    """

    name: str
    family: str
    m: int = 1
    steps: int | None = None
    decay: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"VariantSpec.name must be a string, got {type(self.name).__name__}")
        if self.family not in FAMILIES:
            raise ValueError(f"VariantSpec.family must be one of {VARIANTS}, got {self.family!r}")
        row = FAMILIES[self.family]
        positive_int(self.m, "VariantSpec.m")
        if not row.counted and self.m != 1:
            raise ValueError(f"VariantSpec: {self.family} takes one attack (m = 1), got m = {self.m}")
        if (self.steps is None) == row.takes_steps:
            carry = ", ".join(n for n, f in FAMILIES.items() if f.takes_steps)
            raise ValueError(f"VariantSpec: steps (K') is required exactly for the families whose names "
                             f"carry it ({carry}), got family {self.family!r} with steps={self.steps!r}")
        if self.steps is not None:
            positive_int(self.steps, "VariantSpec.steps")
        if not isinstance(self.decay, bool) or (self.decay and not row.takes_decay):
            raise ValueError(f"VariantSpec.decay must be a bool, True only for a family with 1/t decay "
                             f"({', '.join(n for n, f in FAMILIES.items() if f.takes_decay)}), got "
                             f"{self.decay!r} for {self.family!r}")

    @property
    def row(self) -> Family:
        """The family's row of :data:`FAMILIES`."""
        return FAMILIES[self.family]

    @property
    def danskin(self) -> bool:
        """Whether the update is the Danskin direction."""
        return self.row.rule == "danskin"


def parse_variant(spec: str) -> VariantSpec:
    """Parse a variant name of the paper (``"pgd-max-10"``, ``"ddi-10"``, ``"pgd-70-1/t"``, ...).

    The name (stripped, lower case) must match one pattern of :data:`FAMILIES` whole.

    Raises
    ------
    TypeError
        If ``spec`` is not a string.
    ValueError
        On an unknown or ill-formed name, or a count below 1, listing the accepted forms.

    Examples
    --------
    >>> parse_variant("ddi-10")
    VariantSpec(name='ddi-10', family='ddi', m=10, steps=None, decay=False)
    >>> parse_variant("pgd-70-1/t").steps, parse_variant("pgd-70-1/t").decay
    (70, True)
    """
    if not isinstance(spec, str):
        raise TypeError(f"variant must be a string, got {type(spec).__name__}")
    s = spec.strip().lower()
    for family, pattern in _COMPILED.items():
        match = pattern.fullmatch(s)
        if match is None:
            continue
        groups = match.groupdict()
        counts = [int(groups[k]) for k in ("m", "steps") if groups.get(k) is not None]
        if any(c < 1 for c in counts):
            raise ValueError(f"variant {spec!r}: the count must be >= 1; accepted forms: {_ACCEPTED}")
        m = int(groups["m"]) if groups.get("m") is not None else 1
        steps = int(groups["steps"]) if groups.get("steps") is not None else None
        return VariantSpec(s, family, m, steps, groups.get("decay") is not None)
    raise ValueError(f"unknown variant {spec!r}; accepted forms: {_ACCEPTED}")


def variant_names(m: int = 10, steps: int = 70) -> tuple[str, ...]:
    """One name per example of every family, with count ``m`` and K' = ``steps`` (benchmarks, tests).

    Examples
    --------
    >>> variant_names(3, 4)[:4]
    ('pgd', 'pgd-max-3', 'pgd-min-3', 'pgd-4')
    """
    m, steps = positive_int(m, "m"), positive_int(steps, "steps")
    return tuple(t.format(m=m, steps=steps) for f in FAMILIES.values() for t in f.examples)


def variant_help(width: int = 16, columns: int = 108) -> str:
    """The variants for a command line's help: per family ``form(s)  inner → update``, wrapped to ``columns``.

    Examples
    --------
    >>> print(variant_help().splitlines()[0])
    pgd              one PGD-K attack (Madry et al.) → its gradient g
    """
    lines = []
    for f in FAMILIES.values():
        forms = ", ".join(f.forms)
        indent = " " * (width + 1)
        first = forms + " " * (width + 1 - len(forms)) if len(forms) <= width else None
        if first is None:
            lines.append(forms)
        text = textwrap.wrap(f"{f.inner} → {f.update}", columns - width - 1)
        lines.append((first or indent) + text[0])
        lines.extend(indent + t for t in text[1:])
    return "\n".join(lines)
