"""The uWSGI names against the one table of them, ``uwsgi-functions.tsv`` at the
top of the repository (the Perl tests check the Perl module against the same
table): the package's names, each function's text signature, usage text and
error name, the type stubs, the ``uwsgi`` module's names, and the older names'
answers. A change to any of these places without the table fails here."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sharedarea
from sharedarea import _sharedarea

from conftest import ROOT, run_python

TABLE = ROOT / "uwsgi-functions.tsv"
FIELDS = ("name", "args", "perl", "python", "direct", "same_as")


@dataclass(frozen=True)
class Function:
    """One row of the table."""

    name: str
    args: str  # as the usage texts write them: "id, pos[, len]"
    perl: bool
    python: bool
    same_as: str | None

    @property
    def params(self) -> list[str]:
        """The argument names in order."""
        return re.findall(r"[a-z]+", self.args)

    @property
    def required(self) -> int:
        """How many arguments must be given."""
        return len(re.findall(r"[a-z]+", self.args.split("[")[0]))


def read_table(path: Path = TABLE) -> list[Function]:
    """The table's rows; raises ValueError naming the line for a row its rules refuse."""
    rows: list[Function] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("\t")
        if len(f) != len(FIELDS):
            raise ValueError(f"{path} line {n}: {len(f)} fields, not {len(FIELDS)}")
        row = dict(zip(FIELDS, f))
        if not re.fullmatch(r"sharedarea_[a-z0-9]+", row["name"]):
            raise ValueError(f"{path} line {n}: name {row['name']!r}")
        args = row["args"]
        if not re.fullmatch(r"id(, [a-z]+)*(\[, [a-z]+)*\]*", args) or args.count("[") != args.count("]"):
            raise ValueError(f"{path} line {n}: args {row['args']!r}")
        for lang in ("perl", "python"):
            if row[lang] not in ("yes", "no"):
                raise ValueError(f"{path} line {n}: {lang} is {row[lang]!r}, not yes or no")
        rows.append(
            Function(
                name=row["name"],
                args=row["args"],
                perl=row["perl"] == "yes",
                python=row["python"] == "yes",
                same_as=None if row["same_as"] == "-" else row["same_as"],
            )
        )
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a name is listed twice")
    return rows


ROWS = [r for r in read_table() if r.python]
BY_NAME = {r.name: r for r in ROWS}

# Argument values for calls built from a shape: each width and signedness gives
# a different answer with them.
VALUES: dict[str, Any] = {
    "pos": 3,
    "len": 5,
    "value": -0x7172737475767778,
    "amount": 0x1FF,
    "data": b"x\xe9z",
    "freq": 0,
    "timeout": 0,
}


def shape_args(row: Function, area: int, n: int | None = None) -> list[Any]:
    """The first ``n`` (default: all) arguments of one call of ``row`` on ``area``."""
    args: list[Any] = []
    for p in row.params[: len(row.params) if n is None else n]:
        if p == "id":
            args.append(area)
        elif p == "buffer":
            args.append(bytearray(8))
        else:
            args.append(VALUES[p])
    return args


def test_the_table_is_read_and_refuses_a_malformed_row(tmp_path: Path) -> None:
    assert len(ROWS) >= 29 and "sharedarea_read64" in BY_NAME
    bad = tmp_path / "t.tsv"
    bad.write_text("sharedarea_read\tid, pos[, len\tyes\tyes\tyes\t-\n")
    with pytest.raises(ValueError, match="line 1: args"):
        read_table(bad)


def test_the_package_provides_exactly_the_tables_python_names() -> None:
    assert list(sharedarea.UWSGI_NAMES) == sorted(BY_NAME)
    module_names = sorted(n for n in dir(_sharedarea) if n.startswith("sharedarea_"))
    assert module_names == sorted(BY_NAME)
    assert set(BY_NAME) <= set(sharedarea.__all__)


def test_import_uwsgi_gets_exactly_the_tables_python_names() -> None:
    r = run_python(
        "import sharedarea.uwsgi, uwsgi\n"
        "print(' '.join(sorted(n for n in dir(uwsgi) if n.startswith('sharedarea_'))))\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == sorted(BY_NAME)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_text_signature_has_the_tables_arguments(name: str) -> None:
    row = BY_NAME[name]
    params = list(inspect.signature(getattr(sharedarea, name)).parameters.values())
    assert [p.name for p in params] == row.params
    assert all(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params)
    optional = [p.name for p in params if p.default is not inspect.Parameter.empty]
    assert optional == row.params[row.required :], "the optional arguments are the table's [, ...] ones"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_usage_text_has_the_tables_arguments(name: str) -> None:
    with pytest.raises(TypeError) as e:
        getattr(sharedarea, name)(*([0] * 9))
    m = re.fullmatch(rf"{name}\(\) takes [0-9 to]+ positional arguments \((.*)\) but 9 were given", str(e.value))
    assert m, str(e.value)
    assert m.group(1) == BY_NAME[name].args


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_errors_name_the_function(name: str) -> None:
    row = BY_NAME[name]
    with pytest.raises(sharedarea.Error) as e:
        getattr(sharedarea, name)(*shape_args(row, -1, row.required))
    assert e.value.function == name


def _stubs() -> dict[str, ast.FunctionDef]:
    """The stubs' functions (the checkout's sharedarea/_sharedarea.pyi, the one pip installs)."""
    tree = ast.parse((ROOT / "python" / "sharedarea" / "_sharedarea.pyi").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_the_stubs_declare_exactly_the_tables_python_names() -> None:
    assert sorted(n for n in _stubs() if n.startswith("sharedarea_")) == sorted(BY_NAME)


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_stub_has_the_tables_arguments_and_the_functions_defaults(name: str) -> None:
    row = BY_NAME[name]
    stub = _stubs()[name].args
    assert not stub.args and not stub.kwonlyargs and stub.vararg is None, "positional-only, like the function"
    assert [a.arg for a in stub.posonlyargs] == row.params
    defaults = [ast.literal_eval(d) for d in stub.defaults]
    assert len(defaults) == len(row.params) - row.required, "the optional arguments are the table's [, ...] ones"
    actual = [p.default for p in inspect.signature(getattr(sharedarea, name)).parameters.values()]
    assert defaults == actual[row.required :], "the stub's defaults are the text signature's"


@pytest.mark.parametrize("name", sorted(n for n, r in BY_NAME.items() if r.same_as))
def test_an_older_name_answers_as_the_name_it_stands_for(name: str) -> None:
    row = BY_NAME[name]
    assert row.same_as is not None
    orig = BY_NAME[row.same_as]
    assert (row.args, row.perl, row.python) == (orig.args, orig.perl, orig.python)
    pattern = bytes((0x81 + 37 * i) % 256 for i in range(64))
    for n in sorted({row.required, len(row.params)}):
        got, left = [], []
        for f in (name, orig.name):
            a = sharedarea.init("1")
            sharedarea.sharedarea_write(a, 0, pattern)
            got.append(getattr(sharedarea, f)(*shape_args(row, a, n)))
            left.append(sharedarea.sharedarea_read(a, 0, 64))
        assert got[0] == got[1], f"{name} with {n} arguments returns what {orig.name} returns"
        assert left[0] == left[1], f"{name} with {n} arguments leaves the bytes {orig.name} leaves"
