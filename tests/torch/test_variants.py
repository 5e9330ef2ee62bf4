"""The variant table: what each row says is what the step does, and every list of variants is the table."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from minmax.torch.attacks import FGSM, PGD
from minmax.torch.descent import DescentStep
from minmax.torch.variants import FAMILIES, VARIANTS, Family, parse_variant, variant_help, variant_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_example_parses_to_its_own_family_and_to_no_other():
    for name, row in FAMILIES.items():
        for template in row.examples:
            spec = parse_variant(template.format(m=3, steps=40))
            assert spec.family == name
            assert spec.m == (3 if row.counted else 1)
            assert spec.steps == (40 if row.takes_steps else None)
            assert spec.decay == ("1/t" in template)
            matches = [n for n, f in FAMILIES.items() if re.fullmatch(f.pattern, spec.name)]
            assert matches == [name], f"{spec.name} matches {matches}"
    assert VARIANTS == tuple(FAMILIES)
    assert len(variant_names()) == sum(len(f.examples) for f in FAMILIES.values())


def _recording(step, x, y):
    """Run one step and return the attack the step built (its class and restarts)."""
    seen = []
    make = step._make_attack

    def spy(restarts):
        attack = make(restarts)
        seen.append(attack)
        return attack

    step._make_attack = spy
    rec = step(x, y)
    return seen[0], rec


@pytest.mark.parametrize("name", variant_names(m=3, steps=4))
def test_the_step_does_what_its_row_says(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    x, y = torch.rand(5, 3, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    spec = parse_variant(name)
    row = spec.row
    attack, rec = _recording(DescentStep(net, name, steps=2, total_steps=4), x, y)
    assert isinstance(attack, FGSM if row.attack == "fgsm" else PGD)
    assert (type(attack) is FGSM) == (row.attack == "fgsm")
    assert attack.restarts == (row.restarts or 3)
    assert attack.steps == (1 if row.attack == "fgsm" else spec.steps or 2)
    assert (attack.decay_after is not None) == spec.decay
    # the sets: one per restart, one (the per-sample worst), or the name's k assembled ones
    assert rec.m == {"each": attack.restarts, "worst": 1, "comb": spec.m}[row.sets]
    if row.rule == "danskin":
        assert rec.slope <= 0 and abs(rec.slope + rec.norm) <= 1e-9 * rec.norm
    else:
        assert sorted(rec.weights.tolist()) == [0.0] * (rec.m - 1) + [1.0]


def test_a_new_row_is_a_new_variant_everywhere(monkeypatch):
    """Adding a variant touches one place: a row makes a name parse and the step run it."""
    row = replace(FAMILIES["ddi"], name="fast-comb", pattern=r"fast-comb-(?P<m>\d+)", forms=("fast-comb-K",),
                  examples=("fast-comb-{m}",), attack="fgsm", restarts=2, sets="comb")
    monkeypatch.setitem(FAMILIES, "fast-comb", row)
    import minmax.torch.variants as variants

    monkeypatch.setitem(variants._COMPILED, "fast-comb", re.compile(row.pattern))
    spec = parse_variant("fast-comb-3")
    assert spec.family == "fast-comb" and spec.danskin
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    attack, rec = _recording(DescentStep(net, spec, steps=2), torch.rand(5, 3, 2, 2, dtype=torch.float64),
                             torch.tensor([0, 1, 2, 0, 1]))
    assert type(attack) is FGSM and attack.restarts == 2 and rec.m == 3
    assert "fast-comb-K" in variant_help()


@pytest.mark.parametrize("changes, match", [
    (dict(attack="cw"), "attack"), (dict(sets="all"), "sets"), (dict(rule="mean"), "rule"),
    (dict(schedule="cosine"), "schedule"), (dict(pattern=r"ddi-(?P<k>\d+)"), "groups"),
    (dict(pattern=r"ddi", restarts=None), "group 'm'"), (dict(rule="single"), "one gradient set"),
    (dict(restarts=0), "restarts"), (dict(restarts=2, schedule="linear-decay"), "linear-decay")])
def test_a_malformed_row_is_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        replace(FAMILIES["ddi"], **changes)
    assert isinstance(replace(FAMILIES["ddi"]), Family)



def test_the_benchmark_runs_every_row():
    from benchmarks.bench_step import VARIANT_NAMES

    assert {parse_variant(n).family for n in VARIANT_NAMES} == set(FAMILIES)
    assert VARIANT_NAMES == variant_names(m=10, steps=70)


def test_the_docs_table_is_generated_from_the_table():
    pytest.importorskip("docutils")
    page = (ROOT / "docs" / "theory" / "ddi.rst").read_text(encoding="utf-8")
    assert ".. minmax-variants::" in page
    assert "list-table" not in page.split("The practical variants", 1)[1]  # no hand-kept copy next to it
    spec = importlib.util.spec_from_file_location("docs_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    rows = [line for line in conf.variant_table_rst() if line.startswith("   * - ")][1:]  # after the header
    assert rows == ["   * - " + ", ".join(f"``{form}``" for form in f.forms) for f in FAMILIES.values()]
    from docutils.core import publish_doctree

    text = "\n".join(conf.variant_table_rst())
    tree = publish_doctree(text, settings_overrides={"report_level": 2, "halt_level": 2})
    cells = [node.astext() for node in tree.findall() if node.tagname == "entry"]
    assert FAMILIES["ddi"].update in cells  # the escaped α* survives as text, not as emphasis
