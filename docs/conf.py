"""Sphinx configuration for the minmax documentation.

Build (warnings are errors, so a broken reference or a docstring that does not parse fails)::

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

The code examples in the pages are doctests; ``tests/test_docs.py`` runs them with the rest of the
suite (``sphinx -b doctest docs docs/_build/doctest`` runs them too).
"""

from __future__ import annotations

import os
import sys

# The package is installed in editable mode by `make`; the path keeps a plain checkout buildable too.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import minmax  # noqa: E402

project = "minmax"
author = "the minmax developers"
copyright = "2026, the minmax developers"
release = minmax.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "numpydoc",
]
# No intersphinx: the build machines have no network, and a build must not depend on one.

templates_path = ["_templates"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
pygments_style = "sphinx"
# numpydoc References sections may list works the text does not cite inline (as numpy's own docs do);
# an unreferenced citation is not an error. Unknown citations and every other warning still are.
suppress_warnings = ["ref.citation"]
pygments_dark_style = "monokai"

# -- API reference -----------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # the numpydoc Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # attributes are documented in each class's Attributes section
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# -- doctest builder ----------------------------------------------------------------------------------
# tests/test_docs.py is what runs the examples (pages with stdlib doctest, docstrings with their module's
# globals, as pytest's --doctest-modules would). `sphinx -b doctest` also works for the pages, with the
# same flags; docstring examples that rely on their module's imports only pass under the test.
import doctest  # noqa: E402

doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL

# -- HTML --------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"minmax {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
mathjax3_config = {
    "tex": {
        "macros": {
            "R": r"\mathbb{R}",
            "argmin": r"\operatorname*{argmin}",
            "argmax": r"\operatorname*{argmax}",
        }
    }
}


# -- docstring preprocessing -------------------------------------------------------------------------
# Two conventions of the code's docstrings that read well in ``help()`` but are not valid reST on their
# own are adapted here, before numpydoc parses a docstring (so the source stays as written):
#
# 1. Type lines such as ``grads : array of shape (m, *shape_k)``: a lone ``*`` is emphasis markup. The
#    stars of the *type* part of the definition lines of the typed sections are escaped (descriptions are
#    left alone, where emphasis may be meant).
# 2. Citations of the module's references: a function's docstring cites ``[1]_`` and says "see the module
#    docstring", where the ``.. [1]`` entry lives (or a module docstring cites what its main function's
#    References list). Each page is its own document, so the missing entries are copied from the module
#    docstring (or from the module's other docstrings) into the docstring's References section. In the
#    summary line (the first paragraph, which autosummary also puts in its tables, where no entry can
#    follow) a citation becomes plain text.
import importlib  # noqa: E402
import inspect  # noqa: E402
import re  # noqa: E402

_TYPED_SECTIONS = {
    "Parameters",
    "Other Parameters",
    "Returns",
    "Yields",
    "Receives",
    "Attributes",
    "Warns",
    "Raises",
}
_TYPE_ONLY_SECTIONS = {"Returns", "Yields", "Receives"}
_STAR = re.compile(r"(?<!\\)\*")
_CITE = re.compile(r"\[([A-Za-z0-9_.-]+)\]_")
_ENTRY = re.compile(r"^(\s*)\.\. \[([A-Za-z0-9_.-]+)\]")


def _is_header(lines, i):
    return bool(lines[i].strip()) and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}


def _escape_type_stars(lines):
    section = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _is_header(lines, i):
            section = stripped if stripped in _TYPED_SECTIONS else None
            continue
        if section is None or not stripped or set(stripped) == {"-"} or line[0].isspace():
            continue
        if " : " in line:
            head, _, kind = line.partition(" : ")
            lines[i] = head + " : " + _STAR.sub(r"\\*", kind)
        elif section in _TYPE_ONLY_SECTIONS:
            lines[i] = _STAR.sub(r"\\*", line)


def _reference_entries(text):
    """``{label: [lines]}`` for the ``.. [label]`` entries of a docstring (with continuation lines)."""
    entries, current, indent = {}, None, 0
    for line in (text or "").expandtabs().splitlines():
        match = _ENTRY.match(line)
        if match:
            indent = len(match.group(1))
            current = entries.setdefault(match.group(2), [])
            current.append(line[indent:])
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            current.append("   " + line.strip())
        else:
            current = None
    return entries


def _module_entries(what, name, obj):
    """Reference entries of the object's module: its docstring first, then its functions' and classes'."""
    module_name = name if what == "module" else getattr(obj, "__module__", None)
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError:
        return {}
    if module is None:
        return {}
    entries = _reference_entries(module.__doc__)
    for member in vars(module).values():
        doc = getattr(member, "__doc__", None)
        if getattr(member, "__module__", None) == module_name and isinstance(doc, str):
            for label, text in _reference_entries(doc).items():
                entries.setdefault(label, text)
    return entries


def _complete_citations(what, name, obj, lines):
    # The summary line: citations become plain text. (The entries copied below then have no reference
    # in the summary; an unreferenced entry is allowed, see suppress_warnings.)
    cited = {m.group(1) for line in lines for m in _CITE.finditer(line)}
    for i, line in enumerate(lines):
        if not line.strip():
            break
        lines[i] = _CITE.sub(r"[\1]", line)
    defined = {m.group(2) for line in lines for m in [_ENTRY.match(line)] if m}
    missing = sorted(cited - defined)
    if not missing:
        return
    available = _module_entries(what, name, obj)
    extra = [line for label in missing for line in available.get(label, [])]
    if not extra:
        return  # nothing to copy: leave the docstring as it is (and the build reports it)
    header = next((i for i in range(len(lines)) if lines[i].strip() == "References" and _is_header(lines, i)),
                  None)
    if header is None:
        lines.extend(["", "References", "----------", *extra])
        return
    end = header + 2
    while end < len(lines) and not _is_header(lines, end):
        end += 1
    while end > header + 2 and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = extra


def _describe_constant(what, obj, lines):
    """A module constant without a ``#:`` comment gets its type's docstring ("Built-in immutable
    sequence."); show its value instead, which is what a reader of the API wants to know."""
    constant_types = (tuple, list, dict, frozenset, str, int, float)
    if what not in ("data", "attribute") or not isinstance(obj, constant_types):
        return
    type_doc = inspect.cleandoc(type(obj).__doc__ or "")
    if lines and "\n".join(lines).strip() != type_doc.strip():
        return  # documented by its module: keep that
    value = repr(obj)
    if len(value) > 300:
        value = value[:300] + " ..."
    lines[:] = [f"Constant ``{value}``.", ""]


def _preprocess_docstring(app, what, name, obj, options, lines):
    _describe_constant(what, obj, lines)
    _escape_type_stars(lines)
    _complete_citations(what, name, obj, lines)


# -- the variant table -------------------------------------------------------------------------------
# ``.. minmax-variants::`` renders the table of the paper's training variants from
# minmax.torch.variants.FAMILIES, the table the training step, the command line and the benchmarks read:
# a variant added there appears here with no edit of the pages (tests/torch/test_variants.py checks it).
from docutils import nodes  # noqa: E402
from docutils.parsers.rst import Directive  # noqa: E402
from docutils.statemachine import StringList  # noqa: E402

_RST_SPECIAL = re.compile(r"([\\*`|])")


def variant_table_rst() -> list[str]:
    """The reST lines of the variant table: one row per family of ``FAMILIES``."""
    from minmax.torch.variants import FAMILIES

    def text(s):
        return _RST_SPECIAL.sub(r"\\\1", s)

    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 16 40 24 20", "",
             "   * - name", "     - inner maximization", "     - update",
             "     - attack · restarts · sets · rule · schedule"]
    for f in FAMILIES.values():
        fields = " · ".join([f.attack, "m" if f.restarts is None else str(f.restarts), f.sets, f.rule,
                             f.schedule])
        lines += ["   * - " + ", ".join(f"``{form}``" for form in f.forms), f"     - {text(f.inner)}",
                  f"     - {text(f.update)}", f"     - ``{fields}``"]
    return lines


class VariantTable(Directive):
    """``.. minmax-variants::``: the table of :data:`minmax.torch.variants.FAMILIES`."""

    has_content = False

    def run(self):
        node = nodes.container()
        self.state.nested_parse(StringList(variant_table_rst(), source="minmax.torch.variants.FAMILIES"),
                                self.content_offset, node)
        return node.children


def setup(app):
    # Before numpydoc's own handler (priority 500) turns the sections into reST.
    app.connect("autodoc-process-docstring", _preprocess_docstring, priority=100)
    app.add_directive("minmax-variants", VariantTable)
