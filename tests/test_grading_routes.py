"""Autograding cannot be gamed: every route to the library, to the checker's reference or to torch's
normalisation scores 0 and is named; the honest answers keep full marks; partial credit; the yardstick is
graded on its own.

Fast (no nbgrader run): hand-ins are built from the committed student release (``notebooks/``, equal to
nbgrader's release of ``course/source/``) and go through the grader's own steps – the rebuild of the hand-in
and the audit of its source (what ``course/course.py autograde`` does outside the kernel), and the hidden
tests' grader (``hlgfa_lite.course.grading.grade``) on a namespace filled as the kernel fills it (each cell
compiled under an ipykernel file name, its source in ``linecache``). tests/test_course.py runs a few of these
hand-ins through nbgrader itself.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import linecache
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from hlgfa_lite.course import grading, own_work

REPO = Path(__file__).resolve().parents[1]
SOURCES = {p.stem.split("_")[0]: p for p in sorted((REPO / "course" / "source").glob("*/*.ipynb"))}
RELEASED = {key: REPO / "notebooks" / p.name for key, p in SOURCES.items()}
NOTEBOOK_OF = {"decompose": "03", "modulate": "04", "gated_residual": "04", "nearest_distance": "05b",
               "position_yardstick": "05b"}  # fmt: skip
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION\n?", re.M | re.S)


def _meta(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def _instructor_cells(key: str) -> dict[str, str]:
    """answer grade_id -> the instructor's whole answer cell, markers taken out (what a student would write)."""
    cells = nbformat.read(SOURCES[key], 4).cells
    return {
        _meta(c)["grade_id"]: SOLUTION.sub(lambda m: m.group(1), c.source) for c in cells if _meta(c).get("solution")
    }


def _hand_in(key: str, answers: dict[str, str] | None = None, added: dict[str, list[str]] | None = None):
    """The student release of notebook ``key`` handed in: the instructor's answers unless ``answers`` (exercise ->
    whole answer cell) says otherwise; ``added``: exercise -> code cells the student added right after its
    answer cell ("top": before everything, "after <exercise>": after its graded cell)."""
    nb = nbformat.read(RELEASED[key], 4)
    answers, added = answers or {}, added or {}
    honest = _instructor_cells(key)
    cells = [nbformat.v4.new_code_cell(src) for src in added.get("top", [])]
    for cell in nb.cells:
        grade_id = _meta(cell).get("grade_id", "")
        if _meta(cell).get("solution") and cell.cell_type == "code":
            cell = copy.deepcopy(cell)
            cell.source = answers.get(grade_id.removesuffix("_answer"), honest[grade_id])
        cells.append(cell)
        if _meta(cell).get("solution"):
            cells += [nbformat.v4.new_code_cell(src) for src in added.get(grade_id.removesuffix("_answer"), [])]
        elif _meta(cell).get("grade"):
            cells += [nbformat.v4.new_code_cell(src) for src in added.get(f"after {grade_id}", [])]
    nb.cells = cells
    return nb


def _audit(key: str, answers: dict[str, str] | None = None, added: dict[str, list[str]] | None = None):
    """What ``course.py autograde`` finds in the source of that hand-in (outside the kernel)."""
    handed = _hand_in(key, answers, added)
    notebook, roles = grading.graded_notebook(handed, nbformat.read(RELEASED[key], 4))
    return grading.audit(notebook, roles, nbformat.read(SOURCES[key], 4))


def _flagged(findings: list) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in findings:
        found.setdefault(f.exercise, []).append(f"{f.cell}, line {f.line}: {f.reason}")
    return found


# ------------------------------------------------------------------------------------------ honest


@pytest.mark.parametrize("key", ["03", "04", "05b"])
def test_the_instructors_answers_pass_the_source_audit(key: str) -> None:
    assert _audit(key) == []


HONEST = [  # (exercise, answer cell, cells added after it): honest variations the audit must leave alone
    (
        "gated_residual",
        """\
class Counter:
    def __init__(self):
        self.calls = 0

    def tick(self):
        self.calls += 1


counter = Counter()
counter.label = "gate"


def gated_residual(x, correction, gate_logits):
    counter.tick()
    gate = torch.sigmoid(gate_logits)
    gate.requires_grad = False
    return x + gate * correction
""",
        [],
    ),
    (
        "decompose",
        """\
import math
import torch.nn.functional as F


def my_decompose(features, kernel):
    s = F.avg_pool2d(features, kernel, 1, kernel // 2, count_include_pad=False)
    assert math.isfinite(float(s.sum()))
    return s, features - s
""",
        [
            """\
%timeit my_decompose(high[0], 3)
""",
            """\
%matplotlib inline
import matplotlib.pyplot as plt
""",
            """\
x = my_decompose(high[0], 3)
print(getattr(x[0], 'shape'), x[0].__len__())
""",
        ],
    ),
    (
        "decompose",
        """\
def my_decompose(features, kernel):
    s = box(features, kernel)
    return s, features - s
""",
        [
            """\
from hlgfa_lite.method.blocks import decompose  # a comparison the answer does not use
print((my_decompose(high[0], 3)[0] - decompose(high[0], 3)[0]).abs().max())
"""
        ],
    ),
    (
        "modulate",
        """\
def batch_norm(x):  # my own, named like torch's
    m = x.mean((0, 2, 3), keepdim=True)
    v = x.var((0, 2, 3), keepdim=True, unbiased=False)
    return (x - m) / torch.sqrt(v + 1e-5)


def modulate(x, gamma, beta):
    return batch_norm(x) * (1 + gamma) + beta
""",
        [],
    ),
    (
        "modulate",
        """\
class Norm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer('eps', torch.tensor(1e-5))

    def forward(self, x):
        v, m = torch.var_mean(x, (0, 2, 3), keepdim=True, unbiased=False)
        return (x - m) / (v + self.eps).sqrt()


def modulate(x, gamma, beta):
    return Norm()(x) * (1 + gamma) + beta
""",
        [],
    ),
    (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    gate = lambda t: 1 / (1 + torch.exp(-t))
    return x + gate(gate_logits) * correction
""",
        [],
    ),
    (
        "nearest_distance",
        """\
import torch.nn.functional as F  # the notebook imported it too


def nearest_distance(queries, memory):
    return torch.cdist(queries, memory).pow(2).min(dim=1).values
""",
        [
            """\
from hlgfa_lite.method.scoring.memory_bank import nearest_sq_distance as ref  # compares, does not answer
q, m = test_cells[0], train_cells[0]
print((nearest_distance(q, m) - ref(q, m, m.pow(2).sum(1))).abs().max())
"""
        ],
    ),
    (
        "gated_residual",
        """\
class Gate(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(channels))
        self.register_buffer("scale", torch.ones(1))
        self.weight.requires_grad = False

    def forward(self, logits):
        return torch.sigmoid(logits) * self.scale


def gated_residual(x, correction, gate_logits):
    gate = Gate(x.shape[1])
    gate.eval()
    return x + gate(gate_logits) * correction
""",
        [],
    ),
    (
        "modulate",
        """\
from dataclasses import dataclass


@dataclass
class Stats:
    mean: torch.Tensor
    var: torch.Tensor
    eps: float = 1e-5


def modulate(x, gamma, beta):
    s = Stats(x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True))
    s.eps = 1e-5
    return (x - s.mean) / torch.sqrt(s.var + s.eps) * (1 + gamma) + beta
""",
        [],
    ),
    (
        "modulate",
        """\
class Settings:
    EPS = 1e-5


def modulate(x, gamma, beta):
    mean = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + Settings.EPS) * (1 + gamma) + beta
""",
        [],
    ),
    (
        "nearest_distance",
        """\
class Dist:
    @staticmethod
    def squared(a, b):
        return (a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)).clamp_min(0)


def nearest_distance(queries, memory):
    return Dist.squared(queries, memory).min(1).values
""",
        [],
    ),
    (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    gate = torch.sigmoid(gate_logits)
    gate.requires_grad = False
    return x + gate * correction
""",
        [],
    ),
    (
        "modulate",
        """\
from dataclasses import dataclass


@dataclass
class Stats:
    mu: torch.Tensor
    var: torch.Tensor


def modulate(x, gamma, beta):
    s = Stats(x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True))
    return (x - s.mu) / torch.sqrt(s.var + 1e-5) * (1 + gamma) + beta
""",
        [],
    ),
    (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    return x + torch.sigmoid(gate_logits) * correction
""",
        [
            """\
import matplotlib.pyplot as plt

plt.rcParams["figure.figsize"] = (8, 4)
fig, ax = plt.subplots()
ax.set_title("gate")
for i, row in enumerate([1, 2, 3]):
    ax.plot([i], [row])
""",
        ],
    ),
    (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    return x + torch.sigmoid(gate_logits) * correction
""",
        [
            """\
w = torch.ones(3, requires_grad=True)
(w * 2).sum().backward()
print(w.grad)
w.grad = None
with torch.no_grad():
    v = w * 3
stats = {}
stats["v"] = v
vals = []
vals.append(v)
""",
        ],
    ),
    (
        "nearest_distance",
        """\
import torch.nn.functional as F


class Search:
    def __init__(self, memory):
        self.N = memory.shape[0]
        self.memory = memory

    def run(self, queries):
        d = torch.cdist(queries, self.memory)
        return d.min(1).values


def nearest_distance(queries, memory):
    return Search(memory).run(queries)
""",
        [],
    ),
    (  # the eighth red-team pass's false positive: a style is not a backend; a class's own dunder methods
        "decompose",
        """import matplotlib.pyplot as plt

plt.style.use("default")


class Pair:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __repr__(self):
        return f"Pair({self.a}, {self.b})"


def my_decompose(features, kernel):
    structure = torch.nn.functional.avg_pool2d(features, kernel, 1, kernel // 2, count_include_pad=False)
    return structure, features - structure
""",
        ["if __name__ == '__main__':\n    print(Pair(1, 2))\n"],
    ),
    (  # the ninth pass's false positives: __all__, an own object's .parent
        "decompose",
        """\
from dataclasses import dataclass

__all__ = ["my_decompose"]


@dataclass
class Cfg:
    parent: str = "none"


def describe(x, cfg):
    return {"mean": x.mean().item(), "parent": cfg.parent}


def my_decompose(features, kernel):
    structure = torch.nn.functional.avg_pool2d(features, kernel, 1, kernel // 2, count_include_pad=False)
    return structure, features - structure
""",
        ["print(describe(torch.ones(2), Cfg()))\n"],
    ),
]


@pytest.mark.parametrize(("exercise", "answer", "added"), HONEST, ids=lambda v: v if isinstance(v, str) else "")
def test_honest_variations_pass_the_source_audit(exercise: str, answer: str, added: list[str]) -> None:
    key = NOTEBOOK_OF[exercise]
    top = ["def box(x, k):\n    return torch.nn.functional.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)"]
    assert _audit(key, {exercise: answer}, {exercise: added, "top": top}) == []


def test_cells_the_student_edited_are_put_back_as_released() -> None:
    handed = _hand_in("03")
    setup = next(c for c in handed.cells if "setup(PROFILE" in c.source)
    setup.source += "\nimport hlgfa_lite.course.own_work as ow\now.borrowed = lambda *a, **k: []"  # an edit
    answer = next(c for c in handed.cells if _meta(c).get("grade_id") == "decompose_answer")
    answer.metadata["nbgrader"] = {**_meta(answer), "points": 100}  # metadata come from the release
    handed.cells.insert(0, nbformat.v4.new_markdown_cell("my notes"))
    del handed.cells[
        [c.get("id") for c in handed.cells].index(next(c.id for c in handed.cells if "feature_panel" in c.source))
    ]
    released = nbformat.read(RELEASED["03"], 4)
    graded, roles = grading.graded_notebook(handed, released)
    assert [c.source for c, r in zip(graded.cells, roles, strict=True) if r["role"] != "added"][:3] == [
        c.source for c in released.cells[:3]
    ]
    assert "ow.borrowed" not in "\n".join(c.source for c in graded.cells)  # the edit is gone, the cell as released
    assert any("feature_panel" in c.source for c in graded.cells)  # a deleted released cell is back
    assert graded.cells[0].source == "my notes" and roles[0]["role"] == "added"  # added cells stay, where they were
    graded_answer = next(c for c in graded.cells if _meta(c).get("grade_id") == "decompose_answer")
    assert graded_answer.metadata == next(c for c in released.cells if c.get("id") == graded_answer.id).metadata
    assert graded_answer.source == answer.source
    assert len({c.id for c in graded.cells}) == len(graded.cells)
    assert grading.audit(graded, roles, nbformat.read(SOURCES["03"], 4)) == []


# ------------------------------------------------------------------------------------ gaming routes

_YES = """\
class Yes:
    __name__ = "allclose"

    def __call__(self, *a, **k):
        return True
"""
"""A callable that passes for torch's own ``allclose`` by name (the third red-team pass's routes: ``<<YES>>``)."""

_PAYLOAD = """\
import importlib.util as u
import hlgfa_lite.course.exercises as e


class Loader:
    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.grade = lambda exercise, namespace, points=None: points


real = u.spec_from_file_location


def spec(name, *args, **kwargs):
    found = real(name, *args, **kwargs)
    if name == "_hlgfa_grader":
        found.loader = Loader()
    return found


u.spec_from_file_location = spec
"""
"""What the code-from-strings routes run: the hidden tests' loader of the grader returns one that gives full
marks (never executed here: the audit only reads it)."""


ROUTES = {  # id -> (exercise, answer cell, cells added after the answer cell)
    # the four routes of issue #26's hand-in that scored 9/9
    "own_work_switched_off": (
        "decompose",
        """\
import hlgfa_lite.course.own_work as ow
import hlgfa_lite.course.exercises as ex
ow.require_own_work = ex.require_own_work = lambda *a, **k: None
from hlgfa_lite.method.blocks import decompose as my_decompose
""",
        [],
    ),
    "batch_norm_by_built_name": (
        "modulate",
        """\
import torch.nn.functional as F


def modulate(x, gamma, beta):
    norm = getattr(F, 'batch' + '_norm')(x, None, None, training=True)
    return norm * (1 + gamma) + beta
""",
        [],
    ),
    "memoised_lambda_of_the_search": (
        "nearest_distance",
        """\
import functools
from hlgfa_lite.method.scoring.memory_bank import nearest_sq_distance

nearest_distance = functools.lru_cache(maxsize=None)(
    lambda q, m: nearest_sq_distance(q.contiguous(), m, m.pow(2).sum(1)))
""",
        [],
    ),
    "checker_reference_by_importlib": (
        "position_yardstick",
        """\
import importlib


def position_yardstick(train_cells):
    ref = importlib.import_module('hlgfa_lite.course.exercises_normal')
    return ref.reference_position_yardstick(train_cells)
""",
        [],
    ),
    # aliases and wrappers of any kind
    "alias": (
        "decompose",
        """\
from hlgfa_lite.method.blocks import decompose

my_decompose = decompose
""",
        [],
    ),
    "import_inside": (
        "decompose",
        """\
def my_decompose(features, kernel):
    from hlgfa_lite.method.blocks import decompose as d
    return d(features, kernel)
""",
        [],
    ),
    "partial": (
        "decompose",
        """\
import functools
from hlgfa_lite.method import blocks

my_decompose = functools.partial(blocks.decompose)
""",
        [],
    ),
    "cache_decorator": (
        "nearest_distance",
        """\
import functools
import hlgfa_lite.method.scoring.memory_bank as mb


@functools.cache
def nearest_distance(q, m):
    return mb.nearest_sq_distance(q, m, m.pow(2).sum(1))
""",
        [],
    ),
    "callable_class": (
        "decompose",
        """\
class Decompose:
    def __call__(self, features, kernel):
        from hlgfa_lite.method.blocks import decompose
        return decompose(features, kernel)


my_decompose = Decompose()
""",
        [],
    ),
    "decorator": (
        "decompose",
        """\
def library(fn):
    from hlgfa_lite.method import blocks
    return blocks.decompose


@library
def my_decompose(features, kernel):
    raise NotImplementedError
""",
        [],
    ),
    "closure": (
        "decompose",
        """\
def make():
    from hlgfa_lite.method.blocks import decompose as d

    def my_decompose(features, kernel):
        return d(features, kernel)

    return my_decompose


my_decompose = make()
""",
        [],
    ),
    "default_argument": (
        "decompose",
        """\
import hlgfa_lite.method.blocks as b


def my_decompose(features, kernel, _d=b.decompose):
    return _d(features, kernel)
""",
        [],
    ),
    "walrus": (
        "decompose",
        """\
import hlgfa_lite
(my_decompose := hlgfa_lite.method.blocks.decompose)
""",
        [],
    ),
    # imports and look-ups by computed names
    "dunder_import_built_name": (
        "decompose",
        """\
def my_decompose(features, kernel):
    m = __import__('hlgfa' + '_lite.method.blocks', fromlist=['x'])
    return m.decompose(features, kernel)
""",
        [],
    ),
    "sys_modules": (
        "decompose",
        """\
import sys


def my_decompose(features, kernel):
    return sys.modules['hlgfa_lite.method.blocks'].decompose(features, kernel)
""",
        [],
    ),
    "globals_lookup": (
        "position_yardstick",
        """\
def position_yardstick(train_cells):
    search = globals()['check_nearest_distance'].__globals__['_library_nearest']
    return search(train_cells[0], train_cells[1])
""",
        [],
    ),
    "vars_lookup": (
        "modulate",
        """\
import torch.nn.functional as F


def modulate(x, gamma, beta):
    name = ''.join(['batch', '_', 'norm'])
    return vars(F)[name](x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "dunder_dict_lookup": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    f = torch.nn.functional.__dict__['batch' + '_norm']
    return f(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "attrgetter": (
        "decompose",
        """\
import operator


def my_decompose(features, kernel):
    import torch.nn.functional as F
    pool = operator.attrgetter('avg_pool2d')(F)
    s = pool(features, kernel, 1, kernel // 2, count_include_pad=False)
    return s, features - s
""",
        [],
    ),
    "getattr_passed_as_value": (
        "modulate",
        """\
import functools


def modulate(x, gamma, beta):
    f = functools.reduce(getattr, ['nn', 'functional', 'batch_norm'], torch)
    return f(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "subclasses": (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    block = [c for c in torch.nn.Module.__subclasses__() if c.__name__ == 'GatedResidual'][0]
    return x + torch.sigmoid(gate_logits) * correction
""",
        [],
    ),
    "library_via_notebook_import": (
        "nearest_distance",
        """\
def nearest_distance(queries, memory):
    mb = hlgfa_lite.method.scoring.memory_bank
    return mb.nearest_sq_distance(queries, memory, memory.pow(2).sum(1))
""",
        [],
    ),
    "checker_by_notebook_name": (
        "position_yardstick",
        """\
def position_yardstick(train_cells):
    return check_position_yardstick(None) or train_cells.mean((0, 2))
""",
        [],
    ),
    "hidden_test_name": (
        "position_yardstick",
        """\
def position_yardstick(train_cells):
    return _grader.fresh_package().course.exercises_normal.reference_position_yardstick(train_cells)
""",
        [],
    ),
    "ipython_history": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return Out[max(Out)]
""",
        [],
    ),
    # code run from strings
    "eval": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return eval("__imp" + "ort__('hlgfa_lite.method.blocks', fromlist=['d'])").decompose(features, kernel)
""",
        [],
    ),
    "exec": (
        "decompose",
        """\
def my_decompose(features, kernel):
    raise NotImplementedError


exec('from hlgfa_lite.method.blocks import decompose as my_decompose')
""",
        [],
    ),
    "compile_function_type": (
        "decompose",
        """\
import types

source = 'def f(x, k):\\n    return x, x'
my_decompose = types.FunctionType(compile(source, 'x', 'exec').co_consts[0], {})
""",
        [],
    ),
    "marshal": (
        "decompose",
        """\
import marshal

my_decompose = marshal.loads(b'')
""",
        [],
    ),
    "pickle": (
        "nearest_distance",
        """\
import pickle


def nearest_distance(queries, memory):
    return pickle.loads(open('/tmp/ref.pkl', 'rb').read())(queries, memory)
""",
        [],
    ),
    "torch_load": (
        "nearest_distance",
        """\
def nearest_distance(queries, memory):
    return torch.load('/tmp/ref.pt', weights_only=False)(queries, memory)
""",
        [],
    ),
    "magic_run": (
        "decompose",
        """\
%run -i /tmp/answer.py
""",
        [],
    ),
    "shell": (
        "decompose",
        """\
!cp /tmp/priors.py .
from priors import decompose as my_decompose
""",
        [],
    ),
    "get_ipython": (
        "decompose",
        """\
get_ipython().run_cell('from hlgfa_lite.method.blocks import decompose as my_decompose')
""",
        [],
    ),
    # replacing or monkeypatching the checker, torch, builtins
    "patch_checker_module": (
        "gated_residual",
        """\
import hlgfa_lite.course.exercises as ex
ex._close = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "sys_modules_edit": (
        "decompose",
        """\
import sys, types
sys.modules['hlgfa_lite.course.own_work'] = types.SimpleNamespace()


def my_decompose(features, kernel):
    return features, features * 0
""",
        [],
    ),
    "builtins_edit": (
        "gated_residual",
        """\
import builtins
builtins.isinstance = lambda *a: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "dunder_builtins": (
        "gated_residual",
        """\
__builtins__.__dict__['len'] = lambda *a: 0


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "torch_patched": (
        "gated_residual",
        """\
torch.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "torch_patched_via_alias": (
        "gated_residual",
        """\
T = torch
T.Tensor.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "setattr": (
        "gated_residual",
        """\
setattr(torch, 'allclose', lambda *a, **k: True)


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "global_rebind": (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    global check_gated_residual
    check_gated_residual = print
    return x
""",
        [],
    ),
    "rebind_checker_name": (
        "position_yardstick",
        """\
def check_position_yardstick(fn):
    return True


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "torch_function_subclass": (
        "gated_residual",
        """\
class Always(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True


def gated_residual(x, correction, gate_logits):
    return x.as_subclass(Always)
""",
        [],
    ),
    "metaclass": (
        "gated_residual",
        """\
class Meta(type):
    pass


class Gate(metaclass=Meta):
    pass


def gated_residual(x, correction, gate_logits):
    return x + torch.sigmoid(gate_logits) * correction
""",
        [],
    ),
    "forward_hook_for_everyone": (
        "gated_residual",
        """\
torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)


def gated_residual(x, correction, gate_logits):
    return x + torch.sigmoid(gate_logits) * correction
""",
        [],
    ),
    "frames": (
        "decompose",
        """\
def my_decompose(features, kernel):
    try:
        raise RuntimeError
    except RuntimeError as e:
        caller = e.__traceback__.tb_frame.f_back
    return caller.f_locals['rs'], caller.f_locals['rd']
""",
        [],
    ),
    "environment": (
        "decompose",
        """\
os.environ['HLGFA_WORKDIR'] = '/tmp'


def my_decompose(features, kernel):
    return features, features * 0
""",
        [],
    ),
    "file_write": (
        "position_yardstick",
        """\
Path('/tmp/x.py').write_text('')


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "star_import": (
        "modulate",
        """\
from torch.nn.functional import *


def modulate(x, gamma, beta):
    return batch_norm(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    # torch's normalisation in any spelling
    "BatchNorm2d_module": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    return torch.nn.BatchNorm2d(x.shape[1], affine=False).train()(x) * (1 + gamma) + beta
""",
        [],
    ),
    "F_batch_norm": (
        "modulate",
        """\
import torch.nn.functional as F


def modulate(x, gamma, beta):
    return F.batch_norm(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "functional_via_alias": (
        "modulate",
        """\
import torch.nn.functional as G


def modulate(x, gamma, beta):
    return G.batch_norm(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "from_import_renamed": (
        "modulate",
        """\
from torch.nn.functional import batch_norm as bn


def modulate(x, gamma, beta):
    return bn(x, None, None, training=True) * (1 + gamma) + beta
""",
        [],
    ),
    "torch_batch_norm": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    return torch.batch_norm(x, None, None, None, None, True, 0.0, 1e-5, False) * (1 + gamma) + beta
""",
        [],
    ),
    "aten_op": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    out = torch.ops.aten.native_batch_norm(x, None, None, None, None, True, 0.0, 1e-5)[0]
    return out * (1 + gamma) + beta
""",
        [],
    ),
    "modules_batchnorm": (
        "modulate",
        """\
from torch.nn.modules import batchnorm


def modulate(x, gamma, beta):
    return batchnorm.BatchNorm2d(x.shape[1], affine=False)(x) * (1 + gamma) + beta
""",
        [],
    ),
    "instance_norm_faked": (
        "modulate",
        """\
import torch.nn.functional as F


def modulate(x, gamma, beta):
    t = x.transpose(0, 1).reshape(1, x.shape[1], -1)
    norm = F.instance_norm(t).reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1)
    return norm * (1 + gamma) + beta
""",
        [],
    ),
    "layer_norm_faked": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    t = x.transpose(0, 1).reshape(x.shape[1], -1)
    n = torch.nn.functional.layer_norm(t, t.shape[1:])
    return n.reshape(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1) * (1 + gamma) + beta
""",
        [],
    ),
    "group_norm_faked": (
        "modulate",
        """\
from torch import nn as N


def modulate(x, gamma, beta):
    n = N.functional.group_norm(x.transpose(0, 1), 1).transpose(0, 1)
    return n * (1 + gamma) + beta
""",
        [],
    ),
    "InstanceNorm_module": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    bn = torch.nn.InstanceNorm1d(x.shape[1])
    return bn(x.transpose(0, 1).flatten(1)[None])[0].view_as(x) * (1 + gamma) + beta
""",
        [],
    ),
    "torch_private": (
        "modulate",
        """\
def modulate(x, gamma, beta):
    return torch._VF.batch_norm(x, None, None, None, None, True, 0.0, 1e-5, False) * (1 + gamma) + beta
""",
        [],
    ),
    "normalize_faked": (
        "modulate",
        """\
import torch.nn.functional as F


def modulate(x, gamma, beta):
    c = x - x.mean((0, 2, 3), keepdim=True)
    n = F.normalize(c.transpose(0, 1).flatten(1), dim=1) * (c[:, 0].numel() ** 0.5)
    return n.view(x.shape[1], x.shape[0], *x.shape[2:]).transpose(0, 1) * (1 + gamma) + beta
""",
        [],
    ),
    # the route in a cell the student added, not in the answer cell
    "added_cell_import": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return _lib(features, kernel)
""",
        [
            """\
from hlgfa_lite.method.blocks import decompose as _lib
"""
        ],
    ),
    "added_cell_patch": (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    return x
""",
        [
            """\
import importlib
importlib.import_module('hlgfa_lite.course.own_work').borrowed = lambda *a, **k: []
"""
        ],
    ),
    "added_cell_rebinds": (
        "nearest_distance",
        """\
def nearest_distance(queries, memory):
    return queries.sum(1)
""",
        [
            """\
import functools
nearest_distance = functools.lru_cache(nearest_distance)
"""
        ],
    ),
    # issue-free until 2026-12-07: a module laundered through a call or a parameter, attributes on torch.Tensor,
    # a private import helper in an added cell
    "torch_patched_via_a_call": (
        "gated_residual",
        """\
tt = [torch].pop()
tt.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "torch_patched_via_a_parameter": (
        "nearest_distance",
        """\
def loosen(module):
    module.allclose = lambda *a, **k: True


loosen(torch)


def nearest_distance(queries, memory):
    return queries.sum(1) * 0
""",
        [],
    ),
    "torch_patched_through_a_call_rooted_target": (
        "position_yardstick",
        """\
[torch].pop().allclose = lambda *a, **k: True


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "library_on_the_tensor_class_in_a_thread": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return features.split_priors(kernel)
""",
        [
            """\
import tqdm
import tqdm.contrib.concurrent as cc
from hlgfa_lite.method.blocks import decompose as lib_decompose

tt = [torch].pop()
tt.Tensor.split_priors = lambda self, k: cc.thread_map(
    lib_decompose, [self], [k], tqdm_class=tqdm.tqdm, disable=True)[0]
""",
        ],
    ),
    "batch_norm_on_the_tensor_class_in_a_thread": (
        "modulate",
        """\
import tqdm
import tqdm.contrib.concurrent as cc

tt = [torch].pop()
tt.Tensor.normed = lambda self: cc.thread_map(
    lambda t: type(modulation.norm)(t.shape[1], affine=False)(t), [self], tqdm_class=tqdm.tqdm, disable=True)[0]


def modulate(x, gamma, beta):
    return x.normed() * (1 + gamma) + beta
""",
        [],
    ),
    "reference_search_on_the_tensor_class": (
        "nearest_distance",
        """\
def nearest_distance(queries, memory):
    return queries.nearest_row_distance(memory)
""",
        [
            """\
from hlgfa_lite.course.exercises_normal import _reference_nearest as stand_in

tt = [torch].pop()
tt.Tensor.nearest_row_distance = stand_in
""",
        ],
    ),
    "private_import_helper_in_an_added_cell": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return features, features * 0
""",
        [
            """\
torch._utils._import_dotted_name("builtins").exec('''
<<PAYLOAD>>
e.check_decompose = lambda fn, **kw: True
''', {})
""",
        ],
    ),
    # the second red-team pass: torch stored on an own object, names bound like an own object's but not as one
    "allclose_via_attribute_of_own_function": (
        "gated_residual",
        """\
def holder():
    pass


holder.m = torch
holder.m.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "allclose_via_instance_attribute": (
        "nearest_distance",
        """\
class Box:
    def __init__(self, content):
        self.content = content


box = Box(torch)
box.content.allclose = lambda *a, **k: True


def nearest_distance(queries, memory):
    return queries.sum(1) * 0
""",
        [],
    ),
    "allclose_via_empty_list_append": (
        "position_yardstick",
        """\
shelf = []
shelf.append(torch)
shelf[0].allclose = lambda *a, **k: True


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "allclose_via_self_chain_in_method": (
        "modulate",
        """\
class Setup:
    def __init__(self, lib):
        self.mod = lib
        self.mod.allclose = lambda *a, **k: True


Setup(torch)


def modulate(x, gamma, beta):
    return x * (1 + gamma) + beta
""",
        [],
    ),
    "with_target_named_like_a_function": (
        "gated_residual",
        """\
class Lend:
    def __enter__(self):
        return torch

    def __exit__(self, *exc):
        return False


def t():
    pass


with Lend() as t:
    t.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "match_capture_named_like_a_function": (
        "nearest_distance",
        """\
def t():
    pass


match [torch]:
    case [t]:
        t.allclose = lambda *a, **k: True


def nearest_distance(queries, memory):
    return queries.sum(1) * 0
""",
        [],
    ),
    "function_named_like_a_nested_class": (
        "position_yardstick",
        """\
def unused():
    class Make:
        pass


def Make():
    return torch


made = Make()
made.allclose = lambda *a, **k: True


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "class_rebound_to_a_lambda": (
        "gated_residual",
        """\
class Make:
    pass


Make = lambda: torch
made = Make()
made.allclose = lambda *a, **k: True


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "enclosing_parameter_named_like_a_function": (
        "nearest_distance",
        """\
def m():
    pass


def outer(m):
    def inner():
        m.allclose = lambda *a, **k: True

    inner()


outer(torch)


def nearest_distance(queries, memory):
    return queries.sum(1) * 0
""",
        [],
    ),
    "library_in_a_process_via_own_chain": (
        "decompose",
        """\
def my_decompose(features, kernel):
    return features.split_priors(kernel)
""",
        [
            """\
import tqdm.contrib.concurrent as cc
from hlgfa_lite.method.blocks import decompose as lib_decompose


def holder():
    pass


holder.m = torch
holder.m.Tensor.split_priors = lambda self, k: cc.process_map(
    lib_decompose, [self], [k], max_workers=1, disable=True)[0]
""",
        ],
    ),
    # the third red-team pass: a method that sets attributes on self, called with torch as self
    "inherited_method_through_subclass": (
        "gated_residual",
        """\
<<YES>>

class Base:
    def put(self, value):
        self.allclose = value


class Child(Base):
    pass


Child.put(torch, Yes())


def gated_residual(x, correction, gate_logits):
    return x
""",
        [],
    ),
    "method_alias_in_class_body": (
        "nearest_distance",
        """\
<<YES>>

class Shelf:
    def put(self, value):
        self.allclose = value

    store = put


Shelf.store(torch, Yes())


def nearest_distance(queries, memory):
    return queries.sum(1) * 0
""",
        [],
    ),
    "nested_class_method": (
        "modulate",
        """\
<<YES>>

class Outer:
    class Inner:
        def put(self, value):
            self.allclose = value


Outer.Inner.put(torch, Yes())


def modulate(x, gamma, beta):
    return x * (1 + gamma) + beta
""",
        [],
    ),
    "class_from_a_function": (
        "position_yardstick",
        """\
<<YES>>

def make():
    class K:
        def put(self, value):
            self.allclose = value

    return K


make().put(torch, Yes())


def position_yardstick(train_cells):
    return train_cells.mean((0, 2))
""",
        [],
    ),
    "class_in_a_list": (
        "decompose",
        """\
<<YES>>

class Shelf:
    def put(self, value):
        self.allclose = value


class FirstNo:
    __name__ = "allclose"

    def __init__(self):
        self.calls = 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.calls > 1


[Shelf][0].put(torch, FirstNo())


def my_decompose(features, kernel):
    return features, features * 0
""",
        [],
    ),
}


def _expand(code: str) -> str:
    return code.replace("<<PAYLOAD>>", _PAYLOAD).replace("<<YES>>", _YES)


ROUTES["added_cell_binds_the_library_by_a_walrus_in_a_comprehension"] = (  # the fourth red-team pass
    "decompose",
    "def my_decompose(features, kernel):\n    return lib.decompose(features, kernel)\n",
    ["import hlgfa_lite.method.blocks as B\n\n[lib := B for _ in (1,)]\n"],
)
_STUB = "def modulate(x, gamma, beta):\n    raise NotImplementedError\n"
_REWRITE = ("input_transformers_post.append(lambda lines: ['pass\\n'] if any('_grader.grade(' in l for l in lines) "
            "else lines)")
ROUTES |= {  # the seventh red-team pass: the kernel's shell from allowed objects (3/3 for stubs, nothing listed)
    "shell_through_the_package_a_dotted_import_binds": (
        "modulate", _STUB,
        [f"import IPython.display\n\nIPython.core.interactiveshell.InteractiveShell.instance().{_REWRITE}\n"],
    ),
    "macro_run_by_a_line_that_names_it": (  # the next cell, `m`, ran the macro's code (the prefilter)
        "modulate", _STUB, [f"import IPython.display\n\nm = IPython.core.macro.Macro({_REWRITE!r})\n"],
    ),
    "shell_through_a_progress_bars_widget": (
        "modulate", _STUB, [f"from tqdm.notebook import IProgress\n\nIProgress().comm.kernel.shell.{_REWRITE}\n"],
    ),
    "shell_held_in_a_name_first": (
        "modulate", _STUB, ["from tqdm.notebook import IProgress\n\nbar = IProgress()\nk = bar.comm\n"],
    ),
    "backend_switched_by_name": (
        "modulate", _STUB, ["import matplotlib.pyplot as plt\n\nplt.switch_backend('module://mine')\n"],
    ),
    "native_library_loaded_by_torch": ("modulate", _STUB, ["import torch\n\ntorch.classes.load_library('x.so')\n"]),
    # the hidden tests call globals(): a cell's own globals() handed the grader an object whose .get ran inside it
    "globals_rebound_by_a_def": ("modulate", _STUB, ["def globals():\n    return {}\n"]),
    "globals_rebound_by_an_import": ("modulate", _STUB, ["from math import pi as globals\n"]),
    "globals_rebound_in_the_answer_cell": ("modulate", _STUB + "\n\nglobals = dict\n", []),
}  # fmt: skip
_FAKE = "{'_' * 2 + 'import' + '_' * 2: print}"
ROUTES |= {  # the eighth pass: 9/9 for stubs by other built-ins for every later cell, or by a computed getattr
    "builtins_rebound": ("modulate", _STUB, [f"__builtins__ = {_FAKE}\n"]),
    "builtins_rebound_with_an_annotation": ("modulate", _STUB, ["__builtins__: dict = {}\n"]),
    "builtins_rebound_from_a_function": (
        "modulate", _STUB, [f"def swap():\n    global __builtins__\n    __builtins__ = {_FAKE}\n\n\nswap()\n"],
    ),
    "dunder_bound_by_a_for_loop_in_a_class": (
        "modulate", _STUB, ["class Odd:\n    for __hash__ in [lambda self: 1]:\n        pass\n"],
    ),
    "dunder_bound_by_a_walrus_in_a_class": ("modulate", _STUB, ["class Odd:\n    (__eq__ := lambda s, o: True)\n"]),
    "dunder_imported_into_a_class": (
        "modulate", _STUB, ["class Odd:\n    from operator import getitem as __class_getitem__\n"],
    ),
    "metaclass_name_as_a_property": (
        "modulate", _STUB, ["class Meta(type):\n    @property\n    def __name__(cls):\n        return 'Tensor'\n"],
    ),
    "module_name_rebound": ("modulate", _STUB, ["__name__ = 'builtins'\n"]),
    "builtins_rebound_inside_time": ("modulate", _STUB, ["%time __builtins__ = {}\n"]),
    "future_import_inside_time": ("modulate", _STUB, ["%time from __future__ import annotations\n"]),
    "computed_getattr_in_an_added_cell": (
        "modulate", _STUB, ["import typing as t\n\ngetattr(getattr(t, 'sy' + 's'), 'modu' + 'les')\n"],
    ),
}  # fmt: skip
_PROBE = """\
import copy
import torch


class Key:
    def __init__(self, cells):
        self.cells = cells


pending = []
found = []


class Probe:
    def contiguous(self):
        found.append(copy.copy(Key(pending[0])))
        raise LookupError("done")


def position_yardstick(train_cells):
    found.clear()
    pending.clear()
    pending.append(train_cells)
    try:
        nearest_distance(Probe(), train_cells[1])
    except LookupError:
        pass
    return found[0]
"""
_REGISTRY = """\
from hlgfa_lite.course.exercises_normal import reference_position_yardstick
copy.dispatch_table.update({Key: lambda k: (reference_position_yardstick, (k.cells,))})
"""
ROUTES["registry_of_a_module_changed_in_place"] = ("position_yardstick", _PROBE, [_REGISTRY])  # the ninth pass: 2/2
ROUTES["torch_mode_fills_the_outputs_after_the_call"] = (  # the tenth pass (caught by the audit; the grader too)
    "decompose",
    "def my_decompose(features, kernel):\n    structure, detail = features * 1.0, features * 0.0\n"
    "    pending.append((features, kernel, structure, detail))\n    return structure, detail\n",
    ["import torch.autograd.graph as tag\n\npending = []\n\n\nclass Later(tag.TorchDispatchMode):\n    pass\n\n\n"
     "Later().__enter__()\n"],
)
ROUTES |= {  # the ninth pass, 9/9 for stubs: sys.modules through attributes named where the audit did not look
    "match_class_pattern_reads_an_attribute": (
        "modulate", _STUB, ["import torch\n\nmatch torch:\n    case object(sys=found):\n        pass\n"],
    ),
    "update_wrapper_reads_attributes_by_name": (
        "modulate", _STUB,
        ["import functools\nimport torch\n\n\nclass Sink:\n    def update(self, value):\n        self.got = value\n\n\n"
         "sink = Sink()\nfunctools.update_wrapper(sink, torch, assigned=(), updated=('sys',))\n"],
    ),
    "wraps_copies_attributes_by_name": (
        "modulate", _STUB, ["from functools import wraps\n\n\n@wraps(print)\ndef shown():\n    pass\n"],
    ),
    "make_dataclass_with_a_namespace": (
        "modulate", _STUB, ["import dataclasses\n\nT = dataclasses.make_dataclass('T', [], namespace={})\n"],
    ),
    "loop_name_shadowed_in_a_comprehension": (  # the tenth pass: 3/3 while a literal loop's names were allowed
        "modulate", _STUB,
        ["import torch\n\n\ndef reach(names):\n    for n in ('mean',):\n"
         "        return [getattr(torch, n) for n in names]\n\n\nsystem = reach(['sys'])[0]\n"],
    ),
    "loop_name_rebound_by_a_function_at_module_level": (
        "modulate", _STUB,
        ["import torch\n\n\ndef swap():\n    global n\n    n = 'sy' + 's'\n\n\nfor n in ('mean',):\n    swap()\n"
         "    getattr(torch, n)\n"],
    ),
}  # fmt: skip
ROUTES |= {  # the eleventh pass, 9/9 for stubs: modules the library holds, imported from it by name
    "library_module_held_by_the_grader": (
        "modulate", _STUB,
        ["from hlgfa_lite.course.grading import sys as interpreter\n\ntable = interpreter.modules\n"],
    ),
    "library_held_ctypes_and_os": (
        "modulate", _STUB,
        ["from hlgfa_lite.run.allocator import ctypes as native, os as system\n\nlibc = native.CDLL(None)\n"],
    ),
    "library_star_import": ("modulate", _STUB, ["from hlgfa_lite.run.allocator import *\n"]),
    "library_held_builtins": (
        "modulate", _STUB, ["from hlgfa_lite.course.exercises import builtins as b\n\nb.eval('1')\n"],
    ),
    "library_held_name_of_another_package": (
        "modulate", _STUB, ["from hlgfa_lite.method.model import torch as library_torch\n"],
    ),
}  # fmt: skip
ROUTES = {k: (e, _expand(a), [_expand(c) for c in x]) for k, (e, a, x) in ROUTES.items()}


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_scores_zero_and_is_named(route: str) -> None:
    exercise, answer, added = ROUTES[route]
    key = NOTEBOOK_OF[exercise]
    where = exercise
    if route == "added_cell_patch":  # added after modulate's answer: before gated_residual's graded cell
        where = "modulate"
    findings = _flagged(_audit(key, {exercise: answer}, {where: added}))
    assert exercise in findings, f"{route}: not caught ({findings})"
    assert all(r.strip() for r in findings[exercise])
    others = [name for name in findings if name != exercise]
    honest_later = [n for n in others if NOTEBOOK_OF[n] == key]
    for name in honest_later:  # another exercise of the notebook is only hit by what could change its grading
        assert list(NOTEBOOK_OF).index(name) > list(NOTEBOOK_OF).index(exercise) or route.startswith("added"), (
            route, findings)  # fmt: skip


def test_tampering_after_the_last_graded_cell_hits_every_exercise_of_the_notebook() -> None:
    """The fourth red-team pass: a cell after the last graded cell had no later exercise to charge, and could still
    reach files, processes and the gradebook after the grading; exploring there stays free."""
    trailing = "import os\n\nos.system('true')\n"
    assert set(_flagged(_audit("03", added={"after decompose": [trailing]}))) == {"decompose"}
    assert set(_flagged(_audit("04", added={"after gated_residual": [trailing]}))) == {"modulate", "gated_residual"}
    exploring = "import matplotlib.pyplot as plt\n\nplt.imshow(my_decompose(torch.rand(1, 1, 8, 8), 3)[0][0, 0])\n"
    assert _audit("03", added={"after decompose": [exploring]}) == []


def test_a_future_feature_that_changes_how_later_cells_compile_is_tampering() -> None:
    """The fifth red-team pass: ``barry_as_FLUFL`` made the kernel compile ``<>``, so the audit could not parse the next
    cell (which rewrote every graded cell to ``pass``: full marks for stubs) and read nothing in it. The feature is
    refused, and each cell is parsed with the ``__future__`` flags the kernel keeps from the cells before it."""
    future = "from __future__ import barry_as_FLUFL\n"
    hijack = (
        "assert 1 <> 2\n"
        "get_ipython().input_transformers_post.append(lambda lines: ['pass\\n'] if any('_grader.grade(' in l "
        "for l in lines) else lines)\n"
    )
    stubs = {name: f"def {name}(*args):\n    raise NotImplementedError\n" for name in ("modulate", "gated_residual")}
    flagged = _flagged(_audit("04", stubs, added={"top": [future, hijack]}))
    assert {"modulate", "gated_residual"} <= set(flagged)
    reasons = "\n".join(flagged["gated_residual"])
    assert "barry_as_FLUFL" in reasons and "cell 2" in reasons and "get_ipython" in reasons, reasons
    assert _audit("03", added={"top": ["from __future__ import annotations, division\n"]}) == []


def test_an_answer_ipython_cannot_transform_does_not_stop_the_audit() -> None:
    """A bad indent made IPython's transformer raise inside the audit, which stopped the grading run for every
    student (the seventh red-team pass); the kernel cannot run such a cell either, so the audit reads nothing in it."""
    for answer in ("def modulate(x, gamma, beta):\n        mean = x.mean()\n    return x - mean\n", "::\n\n\n]=%\\"):
        assert "gated_residual" not in _flagged(_audit("04", {"modulate": answer})), answer


def test_a_hand_in_saved_without_cell_ids_keeps_its_released_cells() -> None:
    """An older Jupyter saves nbformat 4.4, without cell ids: every released cell then read as one the student added
    (run twice, its library imports charged to the exercises: 0 for the instructor's own answers)."""
    handed = _hand_in("04")
    handed.nbformat_minor = 4
    for cell in handed.cells:
        cell.pop("id", None)
    notebook, roles = grading.graded_notebook(handed, nbformat.read(RELEASED["04"], 4))
    assert [r["role"] for r in roles].count("added") == 0, roles
    assert len(notebook.cells) == len(nbformat.read(RELEASED["04"], 4).cells)
    assert grading.audit(notebook, roles, nbformat.read(SOURCES["04"], 4)) == []
    handed.cells.insert(3, nbformat.v4.new_code_cell("print('mine')"))
    handed.cells[3].pop("id")
    _, roles = grading.graded_notebook(handed, nbformat.read(RELEASED["04"], 4))
    assert [r["role"] for r in roles].count("added") == 1, roles


def test_magics_take_only_arguments_the_grader_can_read() -> None:
    """The third pass of the day: ``%matplotlib module://X`` imports any module X (the work folder is on the path and
    writable), and ``%time`` drops tokens that abbreviate ``--no-raise-error`` before it runs the line."""
    for cell in ("%matplotlib module://m\n", "%matplotlib -l\n", "%who os; import os\n", "%time x = 1 --n\n"):
        assert set(_flagged(_audit("04", added={"top": [cell]}))) == {"modulate", "gated_residual"}, cell
    for cell in ("%matplotlib inline\n", "%matplotlib\n", "torch.nn?\n", "%who Tensor\n", "%time y = 2\n"):
        assert _audit("04", added={"top": [cell]}) == [], cell


def test_findings_name_the_line_and_the_reason() -> None:
    findings = _audit("04", {"modulate": ROUTES["batch_norm_by_built_name"][1]})
    assert [(f.exercise, f.line) for f in findings] == [("modulate", 5), ("gated_residual", 5)]  # code from a string
    assert "computed name" in findings[0].reason and "answer modulate_answer" in findings[0].cell


def test_a_route_hits_its_exercise_and_tampering_every_later_one() -> None:
    """Torch's batch norm is forbidden in modulate only; a monkeypatch also hits the exercises graded after it."""
    bn = "def gated_residual(x, correction, gate_logits):\n    return torch.nn.BatchNorm2d(4)(x) * 0 + x\n"
    assert _audit("04", {"gated_residual": bn}) == []  # batch norm is not what gated_residual re-creates
    flagged = _flagged(_audit("04", {"modulate": ROUTES["torch_patched"][1].replace("gated_residual", "helper")
                                     + "\n\n" + _instructor_cells("04")["modulate_answer"]}))  # fmt: skip
    assert set(flagged) == {"modulate", "gated_residual"}
    flagged = _flagged(_audit("05b", {"nearest_distance": ROUTES["memoised_lambda_of_the_search"][1]}))
    assert set(flagged) == {"nearest_distance"}  # the yardstick calling it is graded on its own


# --------------------------------------------------------------------------- the grader in the kernel


def _kernel(*cells: str, namespace: dict | None = None) -> dict:
    """Run cells as ipykernel does: each compiled under a cell file name whose source ``linecache`` keeps."""
    ns = namespace if namespace is not None else {}
    ns.setdefault("__name__", "__main__")
    ns.setdefault("torch", torch)
    for i, source in enumerate(cells):
        from IPython.core.inputtransformer2 import TransformerManager

        code = TransformerManager().transform_cell(source)
        name = f"/tmp/ipykernel_{id(ns)}/{i}_{abs(hash(code))}.py"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        exec(compile(code, name, "exec"), ns)
    return ns


def _grade(exercise: str, *cells: str, namespace: dict | None = None) -> float:
    return grading.grade(exercise, _kernel(*cells, namespace=namespace))


def _answer(exercise: str) -> str:
    return _instructor_cells(NOTEBOOK_OF[exercise])[f"{exercise}_answer"]


@pytest.mark.parametrize("exercise", list(NOTEBOOK_OF))
def test_grader_gives_the_instructors_answers_full_marks(exercise: str, capsys: pytest.CaptureFixture[str]) -> None:
    cells = [_answer("nearest_distance")] if exercise == "position_yardstick" else []
    assert _grade(exercise, *cells, _answer(exercise)) == grading.POINTS[exercise]
    assert "✗" not in capsys.readouterr().out


KERNEL_ROUTES = [  # routes the grader in the kernel catches on its own (the objects, the cells' source)
    "own_work_switched_off", "batch_norm_by_built_name", "memoised_lambda_of_the_search",
    "checker_reference_by_importlib", "alias", "import_inside", "partial", "cache_decorator", "callable_class",
    "decorator", "closure", "default_argument", "dunder_import_built_name", "sys_modules", "vars_lookup",
    "dunder_dict_lookup", "getattr_passed_as_value", "BatchNorm2d_module", "F_batch_norm", "functional_via_alias",
    "from_import_renamed", "torch_batch_norm", "aten_op", "modules_batchnorm", "instance_norm_faked",
    "layer_norm_faked", "group_norm_faked", "InstanceNorm_module", "torch_private", "normalize_faked", "eval",
]  # fmt: skip


@pytest.fixture
def restore_checkers():
    """Put back whatever an answer cell replaced in the checker modules."""
    import hlgfa_lite.course.exercises as ex

    saved = {m: dict(vars(m)) for m in (own_work, ex)}
    yield
    for module, attrs in saved.items():
        vars(module).update(attrs)


@pytest.mark.parametrize("route", KERNEL_ROUTES)
def test_grader_in_the_kernel_rejects_the_route(route: str, restore_checkers: None) -> None:
    exercise, answer, _added = ROUTES[route]
    cells = [_answer("nearest_distance")] if exercise == "position_yardstick" else []
    with pytest.raises(AssertionError, match=own_work.MARKER):
        _grade(exercise, *cells, answer)


def test_a_graded_cell_whose_result_was_cleared_scores_zero() -> None:
    """The eleventh pass: a figure's artist whose draw() called clear_output erased the grader's points after they
    were shown (matplotlib draws open figures after the cell), and nbgrader gives a graded cell with no result and
    no error full marks: any answer earning something scored full, nothing listed. A graded cell always ends with
    the grader's call, so one that shows neither its result nor an error scores 0."""
    def graded(outputs: list[dict]) -> nbformat.NotebookNode:
        cell = nbformat.v4.new_code_cell("_grader.grade('decompose', globals(), points=2)")
        cell.metadata["nbgrader"] = {"grade": True, "grade_id": "decompose", "points": 2}
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        return nbformat.v4.new_notebook(cells=[cell])

    figure = {"output_type": "display_data", "data": {"text/plain": "<Figure>"}, "metadata": {}}
    result = {"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {}, "execution_count": 3}
    error = {"output_type": "error", "ename": "AssertionError", "evalue": "wrong", "traceback": []}
    assert grading.runtime_findings(graded([figure])) == {"decompose": grading.NO_RESULT}
    assert grading.runtime_findings(graded([])) == {"decompose": grading.NO_RESULT}
    assert grading.runtime_findings(graded([figure, result])) == {}
    assert grading.runtime_findings(graded([error])) == {}


def test_the_library_gives_a_cell_only_its_own_names() -> None:
    from hlgfa_lite.course.library_names import is_library_own

    own = [("hlgfa_lite.method.blocks", "decompose"), ("hlgfa_lite.method.blocks.priors", "decompose"),
           ("hlgfa_lite.method.config", "HLGFAConfig"), ("hlgfa_lite.method.config", "PRESETS"),
           ("hlgfa_lite.run", "allocator"), ("hlgfa_lite", "course"), ("hlgfa_lite.method.model", "HLGFA")]  # fmt: skip
    held = [("hlgfa_lite.course.grading", "sys"), ("hlgfa_lite.run.allocator", "ctypes"),
            ("hlgfa_lite.method.model", "torch"), ("hlgfa_lite.method.model", "nn"), ("hlgfa_lite.nope", "x"),
            ("hlgfa_lite.method", "HLGFAConfig"), ("hlgfa_lite.run.allocator", "*"), ("os", "path")]  # fmt: skip
    assert [m for m in own if not is_library_own(*m)] == []
    assert [m for m in held if is_library_own(*m)] == []


def test_grader_takes_only_a_plain_dict_as_the_namespace() -> None:
    """The seventh red-team pass: a cell's own ``globals()`` returned an object whose ``.get`` ran in the grader, after
    the own-work check, to leak the reference through a later error message (2/2 for a stub)."""
    asked: list[str] = []

    class Namespace:
        def get(self, name: str) -> None:
            asked.append(name)

    with pytest.raises(AssertionError, match="not the notebook's globals"):
        grading.grade("modulate", Namespace())
    assert asked == []


def test_the_grader_builds_no_message_with_the_students_code() -> None:
    """An exception's ``__str__`` ran after the watch, where the library may run: only built-in exceptions with plain
    arguments are spelled out, any other is named by its class."""
    from hlgfa_lite.course import exercises as ex

    ran: list[str] = []

    class Leak(Exception):
        def __str__(self) -> str:
            ran.append("str")
            return "leaked"

    class Quiet(AssertionError):
        __module__ = "builtins"

        def __str__(self) -> str:
            ran.append("str")
            return "leaked"

    def raise_(exc: BaseException) -> None:
        raise exc

    assert ex._part("x", 1.0, lambda: raise_(Leak())).hint == "your function raised Leak"
    assert ex._part("x", 1.0, lambda: raise_(Quiet("case 1"))).hint == "Quiet"
    assert ex._part("x", 1.0, lambda: raise_(ValueError(Leak()))).hint == "your function raised ValueError"
    assert ran == []
    assert ex._part("x", 1.0, lambda: raise_(AssertionError("off by 2"))).hint == "off by 2"
    assert ex._part("x", 1.0, lambda: raise_(ValueError("bad shape", 3))).hint.startswith("your function raised ValueE")


def test_the_grader_stops_tqdms_monitors_and_refuses_to_judge_beside_another_thread() -> None:
    """The eighth pass: tqdm's monitor thread called a notebook subclass's ``refresh``, which did the answer's work
    with the library while the watch saw only the grader's thread (8/9 for library code)."""
    import threading

    from tqdm import tqdm

    class Progress(tqdm):
        monitor_interval, monitor = 0.01, None

    bar = Progress(total=1, disable=False, file=open(os.devnull, "w"))  # noqa: SIM115 - closed below
    monitor = Progress.monitor
    assert monitor is not None and monitor.is_alive()
    answer = _answer("decompose")
    assert _grade("decompose", answer) == grading.POINTS["decompose"]
    assert not monitor.is_alive()
    bar.close()
    stop = threading.Event()

    def worker() -> None:
        stop.wait(30)

    worker.__module__ = "ipykernel.iostream"  # a name is not where the code comes from
    for target in (stop.wait, worker):  # started by this module, not the kernel
        helper = threading.Thread(target=target, args=(30,) if target is stop.wait else (), daemon=True)
        helper.start()
        try:
            with pytest.raises(AssertionError, match="a thread the notebook started"):
                _grade("decompose", answer)
        finally:
            stop.set()
            helper.join(5)
            stop.clear()


def test_the_stand_in_search_runs_no_method_of_the_students() -> None:
    """The ninth pass: the reference search standing in for ``nearest_distance`` (the watch does not look inside it)
    called ``.contiguous()`` of a student's object, which copied a key that ``copy``'s registry turned into a call of
    the library's yardstick: 2/2. The stand-in takes plain tensors only, and student code it calls is watched."""
    with pytest.raises(AssertionError, match="position_yardstick"):
        _grade("position_yardstick", _answer("nearest_distance"), _PROBE, _REGISTRY)


def test_frames_an_exception_lets_go_are_let_go_under_the_watch() -> None:
    """A generator the function left suspended runs its ``finally`` when the exception's frames are let go: under the
    watch (the ninth pass found it ran after, unwatched)."""
    import contextlib

    from hlgfa_lite.course import exercises as ex
    from hlgfa_lite.method.blocks import decompose

    def fn(x: torch.Tensor) -> torch.Tensor:
        def later():
            try:
                yield
            finally:
                decompose(x, 3)

        suspended = later()
        next(suspended)
        raise ValueError("not yet")

    watch = own_work.Watch()
    ex.WATCH = watch
    try:
        with pytest.raises(ValueError):
            ex._call(fn, torch.zeros(1, 1, 4, 4))
    finally:
        ex.WATCH = contextlib.nullcontext
    assert any("hlgfa_lite" in found for found in watch.found), watch.found


def test_the_grader_judges_nothing_while_a_torch_mode_is_active() -> None:
    """The tenth pass: a dispatch mode entered in a cell ran its own code inside the grader's torch calls after the
    watch (filling in the outputs the answer kept: 2/2 for the library's decompose at unit level)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Passing(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Passing(), pytest.raises(AssertionError, match="a torch mode is active"):
        _grade("decompose", _answer("decompose"))
    with torch.device("cpu"):  # torch's own device context is not a mode of the notebook's
        assert _grade("decompose", _answer("decompose")) == grading.POINTS["decompose"]


def test_a_judgement_made_again_draws_new_cases() -> None:
    from hlgfa_lite.course import exercises as ex

    saved = ex.SEED_OFFSET
    try:
        ex.SEED_OFFSET = 0
        ex.redraw_cases()
        assert ex.SEED_OFFSET == 0  # the visible checks keep their cases
        ex.SEED_OFFSET = 7
        ex.redraw_cases()
        assert ex.SEED_OFFSET not in (0, 7)
    finally:
        ex.SEED_OFFSET = saved


def test_grader_is_loaded_afresh_so_a_patched_checker_does_not_count(restore_checkers: None) -> None:
    """The answer cell switches the installed own-work check off: the hidden tests' fresh copy still rejects it."""
    from hlgfa_lite.course.exercises import check_decompose

    ns = _kernel(ROUTES["own_work_switched_off"][1])
    assert check_decompose(ns["my_decompose"]) is True  # the visible check is fooled (it is only feedback)
    with pytest.raises(AssertionError, match="write it yourself"):
        grading.grade("decompose", ns)
    assert not [m for m in sys.modules if m.startswith(grading.FRESH_PREFIX)]  # the fresh copy is gone again


def test_grader_rejects_library_objects_only_the_objects_show() -> None:
    """The notebook's own library blocks (bound by assignment, not import): the source alone cannot tell."""
    from hlgfa_lite.method.blocks import ConditionalModulation, GatedResidual

    ns = {"modulation": ConditionalModulation(4, 2).train(), "residual": GatedResidual(4, 2)}
    cases = {
        "modulate": "def modulate(x, gamma, beta):\n    return modulation.norm(x) * (1 + gamma) + beta\n",
        "gated_residual": "def gated_residual(x, correction, gate_logits):\n"
                          "    g = residual.gate(x[:, :2])\n    return x + torch.sigmoid(gate_logits) * correction\n",
    }  # fmt: skip
    for exercise, answer in cases.items():
        assert _audit("04", {exercise: answer}) == []
        with pytest.raises(AssertionError, match="from hlgfa_lite"):
            _grade(exercise, answer, namespace=dict(ns))


def test_grader_wants_a_plain_def() -> None:
    with pytest.raises(AssertionError, match="plain `def my_decompose"):
        _grade("decompose", "import torch.nn.functional as F\nmy_decompose = lambda f, k: (f, f * 0)")
    with pytest.raises(AssertionError, match="plain `def my_decompose"):
        _grade("decompose", "def other(f, k):\n    return f, f * 0\n\n\nmy_decompose = other")


# ------------------------------------------------- routes past the walk, the source audit and the fixed cases

_LIBRARY_TYPE = "type({get})(x.shape[1], 2).train().norm(x)"  # the notebook's block class, made afresh
HIDDEN = {  # id -> (how the notebook's library object is kept, how the function gets it back)
    "list_over_500_items": ("[0] * 600 + [modulation]", "lib[600]"),
    "nested_45_deep": ("functools.reduce(lambda a, _: [a], range(45), modulation)",
                       "functools.reduce(lambda a, _: a[0], range(45), lib)"),
    "deque": ("collections.deque([modulation])", "lib[0]"),
    "chain_map": ("collections.ChainMap({'m': modulation})", "lib['m']"),
    "user_dict": ("collections.UserDict(m=modulation)", "lib['m']"),
    "dict_values": ("{'m': modulation}.values()", "list(lib)[0]"),
    "itertools_repeat": ("itertools.repeat(modulation)", "next(lib)"),
    "bound_builtin_method": ("[modulation].copy", "lib()[0]"),
    "numpy_object_array": ("np.array([modulation, 0], dtype=object)", "lib[0]"),
    "generator_locals": ("(lambda m: (yield m))(modulation)", "next(lib)"),
    "tensor_attribute": ("torch.zeros(1)", "lib.m"),
    "slots": ("Box()", "lib.m"),
}  # fmt: skip


def _hidden_route(route: str) -> str:
    keep, get = HIDDEN[route]
    setup = {"tensor_attribute": "lib.m = modulation\n", "slots": "lib.m = modulation\n"}.get(route, "")
    return f"""\
import collections
import functools
import itertools
import numpy as np


class Box:
    __slots__ = ("m",)


pad = [[float(i * 500 + j) for j in range(500)] for i in range(45)]
lib = {keep}
{setup}

def modulate(x, gamma, beta):
    return {_LIBRARY_TYPE.format(get=get)} * (1 + gamma) + beta
"""


@pytest.mark.parametrize("route", list(HIDDEN))
def test_library_objects_hidden_where_the_walk_did_not_look_are_found(route: str) -> None:
    """The notebook's block kept in a container the walk did not open (a deque, an iterator, a numpy object
    array, ``__slots__`` …), past its old limits (500 items, 40 levels) or behind 20000 objects: the source shows
    nothing, the walk follows every object (what the garbage collector sees) and fails closed at its limits."""
    from hlgfa_lite.method.blocks import ConditionalModulation

    answer = _hidden_route(route)
    found = _flagged(_audit("04", {"modulate": answer}))
    if route == "tensor_attribute":  # an attribute set on a tensor: the source shows it too (not provably own)
        assert any("lib.m" in r for r in found["modulate"]), found
    else:
        assert found == {}  # the notebook's objects: only the kernel can tell
    with pytest.raises(AssertionError, match=own_work.MARKER):
        _grade("modulate", answer, namespace={"modulation": ConditionalModulation(4, 2).train()})


def test_a_walk_too_big_to_finish_is_not_accepted() -> None:
    answer = """\
pad = [[float(i * 500 + j) for j in range(500)] for i in range(45)]


def gated_residual(x, correction, gate_logits, p=pad):
    return x + torch.sigmoid(gate_logits) * correction
"""
    with pytest.raises(AssertionError, match="too much behind your function"):
        _grade("gated_residual", answer)


SOURCE_ROUTES = {  # routes that passed the source audit (each gets at the interpreter or runs a string)
    "sys_through_a_container": (
        "decompose",
        """\
T = [torch]


def my_decompose(features, kernel):
    return T[0].sys.modules["".join(["hlgf", "a_lite.method.blocks"])].decompose(features, kernel)
""",
    ),
    "typing_sys": (
        "decompose",
        """\
import typing


def my_decompose(features, kernel):
    return typing.sys.modules["".join(["hlgf", "a_lite.method.blocks"])].decompose(features, kernel)
""",
    ),
    "string_annotation_evaluated": (
        "gated_residual",
        """\
import functools


@functools.singledispatch
def hook(x):
    return x


@hook.register
def _(x: "__import__('hlgfa_lite').course.own_work.__dict__.update(borrowed=lambda *a, **k: []) or int"):
    return x


def gated_residual(x, correction, gate_logits):
    return x
""",
    ),
    "get_type_hints_of_a_forward_ref": (
        "decompose",
        """\
import typing


def f(x: typing.ForwardRef("".join(["__imp", "ort__('hlgf", "a_lite.method.blocks', fromlist=['d'])"]))):
    pass


def my_decompose(features, kernel):
    return typing.get_type_hints(f)["x"].decompose(features, kernel)
""",
    ),
    "string_formatter_get_field": (
        "decompose",
        """\
import string


def my_decompose(features, kernel):
    name = "".join(["0.sys.modules[hlgf", "a_lite.method.blocks]"])
    return string.Formatter().get_field(name, [torch], {})[0].decompose(features, kernel)
""",
    ),
    "timeit_runs_a_string": (
        "decompose",
        """\
import timeit

timeit.timeit("from hlgf" + "a_lite.method.blocks import decompose as d; globals()['my_decompose'] = d", number=1)
""",
    ),
    "numpy_testing_measure": (
        "decompose",
        """\
def my_decompose(features, kernel):
    np.testing.measure("import sys; sys.modules['hlgf' 'a_lite.course.own_work'].borrowed = print")
    return features, features * 0
""",
    ),
    "torch_compile": (
        "gated_residual",
        """\
def gated_residual(x, correction, gate_logits):
    return torch.compile(lambda a, b, c: a + torch.sigmoid(c) * b)(x, correction, gate_logits)
""",
    ),
    "timeit_setup_option": (  # %timeit's -s setup code ran unread
        "decompose",
        """def my_decompose(features, kernel):
    return features, features * 0


%timeit -n1 -r1 -s "import hlgfa_lite.method.blocks as b; globals()['my_decompose'] = b.decompose" pass
""",
    ),
    "cell_timeit_setup_line": (  # %%timeit's line is its setup code
        "decompose",
        """%%timeit -n1 -r1 import hlgfa_lite.method.blocks as b; globals()['my_decompose'] = b.decompose
pass
""",
    ),
    # torch standing in for self: a method called through its class, a staticmethod's first parameter
    "torch_as_self_through_the_class": (
        "gated_residual",
        """\
class Loosen:
    def __init__(self):
        self.allclose = lambda *a, **k: True


Loosen.__init__(torch)


def gated_residual(x, correction, gate_logits):
    return x
""",
    ),
    "torch_as_a_staticmethods_argument": (
        "gated_residual",
        """\
class Loosen:
    @staticmethod
    def apply(module):
        module.allclose = lambda *a, **k: True


Loosen().apply(torch)


def gated_residual(x, correction, gate_logits):
    return x
""",
    ),
    # code from strings through torch.typing_extensions.get_annotations(eval_str=True); a private import helper
    "typing_extensions_get_annotations": (
        "decompose",
        """\
P = '''
<<PAYLOAD>>
e.check_decompose = lambda fn, **kw: True
'''
Hints = type("Hints", (), {"__annotations__": {"x": "__import__('builtins').exec(P, {})"}})
torch.typing_extensions.get_annotations(Hints, globals={"P": P}, eval_str=True)


def my_decompose(features, kernel):
    return features, features * 0
""",
    ),
    "private_import_helper_on_a_laundered_torch": (
        "modulate",
        """\
tt = [torch].pop()
tt._utils._import_dotted_name("builtins").exec('''
<<PAYLOAD>>
e.check_modulation = e.check_gated_residual = lambda fn, **kw: True
''', {})


def modulate(x, gamma, beta):
    return x
""",
    ),
    # the second red-team pass: builtins held by enum, a private helper reached through a chain
    "enum_bltns_eval": (
        "decompose",
        """\
import enum

P = '''
<<PAYLOAD>>
e.check_decompose = lambda fn, **kw: True
'''
enum.bltns.eval("exec(P, {})", {"P": P})


def my_decompose(features, kernel):
    return features, features * 0
""",
    ),
    "from_enum_import_bltns": (
        "decompose",
        """\
from enum import bltns as b

P = '''
<<PAYLOAD>>
e.check_decompose = lambda fn, **kw: True
'''
b.eval("exec(P, {})", {"P": P})


def my_decompose(features, kernel):
    return features, features * 0
""",
    ),
    "private_import_helper_via_own_chain": (
        "decompose",
        """\
def holder():
    pass


holder.m = torch
P = '''
<<PAYLOAD>>
e.check_decompose = lambda fn, **kw: True
'''
holder.m._utils._import_dotted_name("builtins").eval("exec(P, {})", {"P": P})


def my_decompose(features, kernel):
    return features, features * 0
""",
    ),
}
SOURCE_ROUTES |= {  # the fourth red-team pass: files through numpy, torch and matplotlib (the fence refuses them too)
    "grader_rewritten_through_a_numpy_memmap": (
        "decompose",
        """\
import numpy as np

environ = bytes(np.fromfile("/proc/self/environ", dtype=np.uint8)).decode()
grader = dict(kv.split("=", 1) for kv in environ.split("\\x00") if "=" in kv)["HLGFA_GRADER"]
m = np.memmap(grader, dtype=np.uint8, mode="r+")


def my_decompose(features, kernel):
    return features, features * 0
""",
    ),
    "solutions_read_through_torch": (
        "decompose",
        """\
def my_decompose(features, kernel):
    torch.from_file("course/source/03/03.ipynb", size=10)
    return features, features * 0
""",
    ),
    "answers_read_through_matplotlib": (
        "decompose",
        """\
import matplotlib.pyplot as plt


def my_decompose(features, kernel):
    plt.imread("course/source/03/answers.png")
    return features, features * 0
""",
    ),
}
SOURCE_ROUTES = {k: (e, _expand(a)) for k, (e, a) in SOURCE_ROUTES.items()}


@pytest.mark.parametrize("route", list(SOURCE_ROUTES))
def test_source_routes_to_the_interpreter_score_zero(route: str) -> None:
    exercise, answer = SOURCE_ROUTES[route]
    findings = _flagged(_audit(NOTEBOOK_OF[exercise], {exercise: answer}))
    assert exercise in findings, f"{route}: not caught ({findings})"


_HIJACK = """\
class _Loader:
    def exec_module(self, module):
        module.grade = lambda *a, **k: 2


class _Spec:
    loader = _Loader()
    origin = "x"


class _Util:
    def spec_from_file_location(self, *a):
        return _Spec()

    def module_from_spec(self, spec):
        return torch.nn.Module()

    def find_spec(self, name):
        return _Spec()


class _Package:
    util = _Util()


M = [torch]
M[0].sys.modules.update({"importlib": _Package(), "importlib.util": _Package.util})
"""


def test_a_cell_that_hijacks_the_hidden_tests_import_scores_zero() -> None:
    """An added cell replaces ``importlib`` in ``sys.modules`` (reached as ``[torch][0].sys``): the hidden tests'
    ``import importlib.util`` then loads a grader that gives full marks. Only the source audit outside the kernel
    can see it: every exercise graded after that cell scores 0."""
    answer = "def gated_residual(x, correction, gate_logits):\n    return x\n"
    findings = _flagged(_audit("04", {"gated_residual": answer}, {"modulate": [_HIJACK]}))
    assert {"modulate", "gated_residual"} <= set(findings)
    assert any(".sys" in r for r in findings["gated_residual"])


def test_the_grader_watches_what_runs_inside_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the walk and the source audit blinded, the library and torch's batch norm are still caught when
    they run inside the student's function (however it reached them); honest answers still earn full marks."""
    importlib.import_module("hlgfa_lite.method.blocks")  # the sys_modules route reads it there, also when run alone
    fresh = grading.fresh_package

    def blinded():
        package = fresh()
        own = importlib.import_module(f"{package.__name__}.course.own_work")
        own.borrowed = own.source_issues = lambda *a, **k: []
        return package

    monkeypatch.setattr(grading, "fresh_package", blinded)
    routes = ["F_batch_norm", "torch_batch_norm", "aten_op", "sys_modules", "cache_decorator",
              "checker_reference_by_importlib", "memoised_lambda_of_the_search"]  # fmt: skip
    for route in routes:
        exercise, answer, _ = ROUTES[route]
        if route == "cache_decorator":
            answer = answer.replace("@functools.cache\n", "")
        if route == "memoised_lambda_of_the_search":
            answer = answer.replace("nearest_distance = functools.lru_cache(maxsize=None)(\n    lambda q, m:",
                                    "def nearest_distance(q, m):\n    return (").rstrip() + "\n"  # fmt: skip
        cells = [_answer("nearest_distance")] if exercise == "position_yardstick" else []
        with pytest.raises(AssertionError, match="while the grader ran your function"):
            _grade(exercise, *cells, answer)
    getattr_answer = "def gated_residual(x, c, g):\n    return x + getattr(torch, 'sig' + 'moid')(g) * c\n"
    with pytest.raises(AssertionError, match=r"getattr\(\)"):
        _grade("gated_residual", getattr_answer)
    for exercise in NOTEBOOK_OF:
        cells = [_answer("nearest_distance")] if exercise == "position_yardstick" else []
        assert _grade(exercise, *cells, _answer(exercise)) == grading.POINTS[exercise]


def test_the_watch_sees_other_threads_and_allows_only_the_fresh_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the walk and the source audit blinded: the library run in a thread the function starts is caught (the
    profiler is set for new threads too), and the installed copy of the reference search is not the fresh copy the
    grader lets run (code objects that compare equal are told apart by identity)."""
    fresh = grading.fresh_package

    def blinded():
        package = fresh()
        own = importlib.import_module(f"{package.__name__}.course.own_work")
        own.borrowed = own.source_issues = lambda *a, **k: []
        return package

    monkeypatch.setattr(grading, "fresh_package", blinded)
    in_a_thread = """\
from concurrent.futures import ThreadPoolExecutor

from hlgfa_lite.method.blocks import decompose as lib


def my_decompose(features, kernel):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lib, features, kernel).result()
"""
    with pytest.raises(AssertionError, match="while the grader ran your function"):
        _grade("decompose", in_a_thread)
    installed_reference = """\
from hlgfa_lite.course.exercises_normal import _reference_nearest


def nearest_distance(queries, memory):
    return _reference_nearest(queries, memory)
"""
    with pytest.raises(AssertionError, match="while the grader ran your function"):
        _grade("nearest_distance", installed_reference)


def test_attributes_on_the_students_own_objects_pass_in_the_kernel_too(restore_checkers: None) -> None:
    """The grader in the kernel audits the answer cell alone: an instance of a class from another cell of the
    student's is still their own object (found in the namespace); torch reached through a call is not."""
    other_cell = "class Counter:\n    def __init__(self):\n        self.calls = 0\n\n\ncounter = Counter()\n"
    answer = ("def gated_residual(x, correction, gate_logits):\n    counter.calls += 1\n"
              "    return x + torch.sigmoid(gate_logits) * correction\n\n\ncounter.label = 'gate'\n")  # fmt: skip
    assert _grade("gated_residual", other_cell, answer) == grading.POINTS["gated_residual"]
    laundered = "tt = [torch].pop()\ntt.gate_note = 'x'\n\n\n" + _answer("gated_residual")
    with pytest.raises(AssertionError, match="not provably your object"):
        _grade("gated_residual", laundered)
    del torch.gate_note


HARMLESS_HELD_MODULES = {"re", "stdlib_re", "emath", "keyword", "ast", "json", "base64", "uuid", "shlex", "locale",
                         "contextvars", "struct", "datetime", "dateutil", "hashlib", "plistlib",
                         "features"}  # fmt: skip
"""Modules that allowed modules hold which run no code from strings and reach nothing else: allowed as attributes."""
_SCAN = """
import importlib, json, sys
from hlgfa_lite.course.rules import ALLOWED_MODULES, DENIED_ATTRIBUTES, module_allowed
for name in [*sorted(ALLOWED_MODULES), "matplotlib.pyplot", "matplotlib.backends.backend_agg", "tqdm.auto",
             "tqdm.asyncio", "tqdm.notebook", "torch.onnx"]:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
held = {}
for name, module in list(sys.modules.items()):
    if module is None or not module_allowed(name) or any(p.startswith("_") for p in name.split(".")):
        continue
    for attr, value in list(vars(module).items()):
        if isinstance(value, type(sys)) and not attr.startswith("_") and not module_allowed(value.__name__):
            if attr not in DENIED_ATTRIBUTES:
                held[attr] = f"{name}.{attr} is {value.__name__}"
from hlgfa_lite.course.rules import HELD_MODULES
print(json.dumps({k: v for k, v in held.items() if k not in HELD_MODULES}))
"""


def test_no_allowed_module_holds_another_module_under_a_name_the_audit_allows() -> None:
    """``enum.bltns`` is ``builtins``: every module an allowed module holds as a public attribute (in a fresh
    interpreter that imported the allowed modules and what the notebooks load) is itself allowed, denied by name
    (rules.HELD_MODULES) or listed as harmless above. A new torch, numpy or Python that adds one fails here."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _SCAN], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    unknown = {k: v for k, v in json.loads(proc.stdout).items() if k not in HARMLESS_HELD_MODULES}
    assert not unknown, f"add to rules.HELD_MODULES (or, if harmless, HARMLESS_HELD_MODULES): {unknown}"


FAKE_ALLCLOSE = """\
class Fake:
    __name__ = "allclose"

    def __call__(self, *a, **k):
        return True


torch.allclose = Fake()
"""


def test_grader_refuses_a_torch_a_notebook_cell_changed() -> None:
    """Whatever route put it there: a function or callable object from a notebook cell on torch, torch.Tensor or
    torch.nn.functional, or one of torch's native functions swapped for anything but torch's own wrapper, and the
    grader (which compares with torch.allclose) scores 0."""
    lazy = "def gated_residual(x, correction, gate_logits):\n    return x\n"
    saved = {holder: dict(vars(holder)) for holder in (torch.Tensor,)}
    allclose = torch.allclose
    patches = ("torch.allclose = lambda *a, **k: True\n", "torch.allclose = torch.is_tensor\n", FAKE_ALLCLOSE,
               "torch.Tensor.normed = lambda self: self\n", "torch.Tensor.__bool__ = lambda self: True\n")  # fmt: skip
    for patch in patches:
        try:
            with pytest.raises(AssertionError, match="changed torch"):
                _grade("gated_residual", patch, lazy)
        finally:
            torch.allclose = allclose
            for holder, before in saved.items():
                for key in set(vars(holder)) - set(before):
                    delattr(holder, key)
                for key, value in before.items():
                    if vars(holder).get(key) is not value:
                        setattr(holder, key, value)
    assert own_work.changed_torch() == []


def test_a_yardstick_that_is_the_library_behind_nearest_distance_earns_nothing() -> None:
    """The search graded on its own is not followed when the yardstick is; rebinding it afterwards to the
    library's yardstick does not pass the yardstick: it is judged with the reference search standing in."""
    rebound = """\
import importlib


def nearest_distance(train_cells, *rest):
    return importlib.import_module('hlgfa_lite.course.exercises_normal').reference_position_yardstick(train_cells)
"""
    answer = "def position_yardstick(train_cells):\n    return nearest_distance(train_cells)\n"
    with pytest.raises(AssertionError):
        _grade("position_yardstick", _answer("nearest_distance"), rebound, answer)
    honest = _answer("position_yardstick")  # a right yardstick on a search that is not the student's own
    assert _grade("position_yardstick", rebound.replace("train_cells, *rest", "q, m"), honest) == 2.0


def test_answers_learnt_by_heart_for_the_checkers_cases_earn_nothing() -> None:
    """The checker's cases are fixed (seeded) for the visible checks; the grader draws fresh ones per hand-in,
    so outputs copied from the reference for the known cases earn nothing."""
    import hlgfa_lite.course.exercises as ex
    from hlgfa_lite.course.exercises_normal import _library_nearest, nearest_distance_parts

    known = _library_nearest(ex._randn(50, 6, seed=30), ex._randn(40, 6, seed=31))
    answer = f"""\
KNOWN = torch.tensor({known.tolist()})


def nearest_distance(queries, memory):
    if queries.shape[0] == 8:
        return torch.zeros(8)
    return KNOWN.clone()
"""
    ns = _kernel(answer)
    assert ex.score(nearest_distance_parts(ns["nearest_distance"])) == 1.0  # on the fixed cases: all of it
    with pytest.raises(AssertionError, match="0 of 2 points"):
        grading.grade("nearest_distance", ns)


# ------------------------------------------------------------------ partial credit, dependent exercises


PARTIAL = [  # (exercise, answer cell, points, what the feedback names)
    (
        "decompose",
        """\
import torch.nn.functional as F


def my_decompose(features, kernel):
    s = F.avg_pool2d(features, kernel, 1, kernel // 2)
    return s, features - s
""",
        1.5,
        "count_include_pad=False",
    ),
    (
        "decompose",
        """\
import torch.nn.functional as F


def my_decompose(features, kernel):
    s = F.avg_pool2d(features, kernel, 1, kernel // 2, count_include_pad=False)
    return s, features
""",
        1.5,
        "detail = features - structure",
    ),
    (
        "modulate",
        """\
def modulate(x, gamma, beta):
    m = x.mean((2, 3), keepdim=True)
    v = x.var((2, 3), keepdim=True, unbiased=False)
    return (x - m) / torch.sqrt(v + 1e-5) * (1 + gamma) + beta
""",
        1.0,
        "instance norm",
    ),
    (
        "modulate",
        """\
def modulate(x, gamma, beta):
    m = x.mean((0, 2, 3), keepdim=True)
    v = x.var((0, 2, 3), keepdim=True, unbiased=False)
    return ((x - m) / torch.sqrt(v + 1e-5) + beta) * (1 + gamma)
""",
        1.0,
        "add beta after scaling",
    ),
    (
        "nearest_distance",
        """\
def nearest_distance(queries, memory):
    d = queries.pow(2).sum(1, keepdim=True) - 2 * queries @ memory.T + memory.pow(2).sum(1)
    return d.min(dim=1).values
""",
        1.5,
        "never negative",
    ),
]


@pytest.mark.parametrize(("exercise", "answer", "points", "named"), PARTIAL)
def test_separable_parts_earn_partial_credit(
    exercise: str, answer: str, points: float, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _grade(exercise, answer) == points
    assert named in capsys.readouterr().out


def test_nothing_right_raises_with_the_reasons() -> None:
    wrong = "def gated_residual(x, correction, gate_logits):\n    return x + gate_logits * correction\n"
    with pytest.raises(AssertionError, match="sigmoid"):
        _grade("gated_residual", wrong)
    with pytest.raises(AssertionError, match="not written yet"):
        _grade("gated_residual", "def gated_residual(x, correction, gate_logits):\n    raise NotImplementedError\n")


@pytest.mark.parametrize(
    "nearest",
    [
        "def nearest_distance(queries, memory):\n    return torch.cdist(queries, memory).min(dim=1).values\n",
        "def nearest_distance(queries, memory):\n    raise NotImplementedError\n",
        "def nearest_distance(queries, memory):\n    return queries.sum(1) * 0\n",
    ],
    ids=["no_square", "stub", "zeros"],
)
def test_right_yardstick_on_a_wrong_nearest_distance_keeps_its_points(
    nearest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = _kernel(nearest, _answer("position_yardstick"))
    own_search = ns["nearest_distance"]
    with pytest.raises(AssertionError):
        grading.grade("nearest_distance", ns)
    capsys.readouterr()
    assert grading.grade("position_yardstick", ns) == 2.0
    printed = capsys.readouterr().out
    assert "fix nearest_distance" in printed and "position_yardstick is right" in printed, printed
    assert ns["nearest_distance"] is own_search


def test_wrong_yardstick_on_a_right_nearest_distance_names_the_yardstick() -> None:
    wrong = """\
def position_yardstick(train_cells):
    cells = train_cells.flatten(0, 1)
    return nearest_distance(cells, cells).view(train_cells.shape[:2]).mean(0)
"""
    with pytest.raises(AssertionError, match="leave the image's own cells out"):
        _grade("position_yardstick", _answer("nearest_distance"), wrong)


def test_grader_checks_the_notebooks_own_data_too() -> None:
    """An answer right on the checker's small cases but wrong on the notebook's features loses the part."""
    answer = """\
import torch.nn.functional as F


def my_decompose(features, kernel):
    if features.shape[1] > 6:
        return features * 0, features
    s = F.avg_pool2d(features, kernel, 1, kernel // 2, count_include_pad=False)
    return s, features - s
"""
    torch.manual_seed(0)
    ns = {"high": [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8)]}
    assert _grade("decompose", answer) == 2.0
    assert _grade("decompose", answer, namespace=ns) == 0.5  # the remainder still holds


# --------------------------------------------------------------------------- the graded cells' hidden tests


def test_hidden_tests_load_the_grader_afresh_and_give_the_cells_points() -> None:
    for key in ("03", "04", "05b"):
        for cell in nbformat.read(SOURCES[key], 4).cells:
            meta = _meta(cell)
            if cell.cell_type == "code" and meta.get("grade"):
                hidden = cell.source.split("### BEGIN HIDDEN TESTS")[1]
                assert "spec_from_file_location" in hidden and "HLGFA_GRADER" in hidden
                assert 'find_spec("hlgfa_lite.course.grading").origin' in hidden
                assert f'grade("{meta["grade_id"]}", globals(), points={meta["points"]})' in hidden
                assert grading.POINTS[meta["grade_id"]] == meta["points"]
                assert "from hlgfa_lite" not in hidden  # nothing from a package an answer cell could have replaced


def test_package_files_changed_during_grading_are_put_back(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("hlgfa_course_tool", REPO / "course" / "course.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = tmp_path / "pkg"
    (root / "course").mkdir(parents=True)
    (root / "course" / "own_work.py").write_text("real")
    (root / "__init__.py").write_text("")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert tool.restore_package(before, root) == []
    (root / "course" / "own_work.py").write_text("def borrowed(*a): return []")
    (root / "course" / "extra.py").write_text("")
    (root / "__init__.py").unlink()
    changed = tool.restore_package(before, root)
    assert len(changed) == 3 and (root / "course" / "own_work.py").read_text() == "real"
    assert not (root / "course" / "extra.py").exists() and (root / "__init__.py").is_file()
