"""Course exercise checkers: the references pass, typical mistakes fail with a specific hint.

The reference solutions are written out here (tests are not installed) and in the instructor's
nbgrader source notebooks (``course/source/``, checked in tests/test_course.py); the installed
package has none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hlgfa_lite.course import exercises
from hlgfa_lite.method.blocks import decompose as library_decompose


def _box_lowpass(features: torch.Tensor, kernel: int) -> torch.Tensor:
    return F.avg_pool2d(features, kernel, stride=1, padding=kernel // 2, count_include_pad=False)


def _decompose(features: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    structure = _box_lowpass(features, kernel)
    return structure, features - structure


def _batch_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + 1e-5)


solutions = SimpleNamespace(  # the reference solutions of the four exercises
    box_lowpass=_box_lowpass,
    decompose=_decompose,
    batch_norm=_batch_norm,
    modulate=lambda x, gamma, beta: _batch_norm(x) * (1 + gamma) + beta,
    gated_residual=lambda x, correction, logits: x + torch.sigmoid(logits) * correction,
    misalignment=lambda high, refined: (high - refined).pow(2).mean(dim=1, keepdim=True),
)


def _not_implemented(*args: object) -> None:
    raise NotImplementedError


def _rejected(checker: Callable, wrong: Callable, capsys: pytest.CaptureFixture[str]) -> str:
    """The hint a checker gives a wrong answer: raised (no part right) or printed with ✗ (some parts right)."""
    capsys.readouterr()
    try:
        ok = checker(wrong)
    except AssertionError as exc:
        return str(exc)
    printed = capsys.readouterr().out
    assert ok is False and printed.startswith("✗"), printed
    return printed


# --- decompose -------------------------------------------------------------------------------


def _pad_darkens(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = F.avg_pool2d(x, k, stride=1, padding=k // 2)  # count_include_pad=True (the default)
    return s, x - s


def _detail_wrong(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = solutions.box_lowpass(x, k)
    return s, x - 0.5 * s


def _swapped(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s, d = solutions.decompose(x, k)
    return d, s


def _strided(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = F.avg_pool2d(x, k, stride=k, ceil_mode=True, count_include_pad=False)
    return s, x - F.interpolate(s, size=x.shape[-2:])


def _mixes_channels(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = solutions.box_lowpass(x, k).mean(dim=1, keepdim=True).expand_as(x)
    return s, x - s


def _half_kernel(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    kk = max(1, k - 2)
    s = F.avg_pool2d(x, kk, stride=1, padding=kk // 2, count_include_pad=False)
    return s, x - s


def _in_place(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = solutions.box_lowpass(x, k)
    x -= s
    return s, x


def test_decompose_references_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_decompose(solutions.decompose) is True
    assert exercises.check_decompose(library_decompose, own_work=False) is True  # the block passes the checks
    assert capsys.readouterr().out.startswith("✓ decompose")


@pytest.mark.parametrize(
    ("wrong", "hint", "share"),
    [
        (_pad_darkens, "count_include_pad=False so borders are not darkened", 0.75),  # inside and remainder right
        (_detail_wrong, "structure + detail must equal the input exactly", 0.75),  # the low-pass right
        (_swapped, "swapped", None),
        (_strided, "must keep the input shape", None),
        (_mixes_channels, "filter each channel", 0.25),  # the remainder right
        (_half_kernel, "kernel x kernel cells", 0.25),
        (_in_place, "do not modify the inputs in place", None),
        (lambda x, k: solutions.box_lowpass(x, k), "return a tuple of two tensors", None),
    ],
)
def test_decompose_mistakes_get_hints_and_partial_credit(
    wrong: Callable, hint: str, share: float | None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hint in _rejected(exercises.check_decompose, wrong, capsys)
    if share is None:  # nothing can be judged: no part right
        with pytest.raises(AssertionError, match=re.escape(hint)):
            exercises.decompose_parts(wrong)
    else:
        assert exercises.score(exercises.decompose_parts(wrong)) == pytest.approx(share)


# --- modulation ------------------------------------------------------------------------------


def _norm(x: torch.Tensor, dims: tuple[int, ...], unbiased: bool = False) -> torch.Tensor:
    return (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, keepdim=True, unbiased=unbiased) + 1e-5)


MODULATION_MISTAKES = [  # each gets half the points: the normalisation and the modulation are judged apart
    (lambda x, g, b: x * (1 + g) + b, "normalise x first"),
    (lambda x, g, b: solutions.batch_norm(x) * g + b, "the scale is (1 + gamma), not gamma"),
    (lambda x, g, b: _norm(x, (2, 3)) * (1 + g) + b, "this is instance norm"),
    (lambda x, g, b: _norm(x, (1, 2, 3)) * (1 + g) + b, "normalise each channel separately"),
    (lambda x, g, b: _norm(x, (0, 2, 3), unbiased=True) * (1 + g) + b, "use the biased variance"),
    (lambda x, g, b: (x - x.mean((0, 2, 3), keepdim=True)) * (1 + g) + b, "divide by the standard deviation"),
    (lambda x, g, b: solutions.batch_norm(x) + b, "gamma has no effect"),
    (lambda x, g, b: solutions.batch_norm(x + b) * (1 + g), "beta must be added after normalising"),
    (lambda x, g, b: (solutions.batch_norm(x) + b) * (1 + g), "add beta after scaling"),
    (lambda x, g, b: solutions.batch_norm(x * (1 + g) + b), "a scale applied before normalising is undone"),
    (lambda x, g, b: solutions.batch_norm(x) * (1 + 2 * g) + b, "gamma must scale the normalised features"),
]


def test_modulation_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_modulation(solutions.modulate) is True
    assert capsys.readouterr().out.startswith("✓ modulate")


def test_modulation_reference_matches_library_block_in_training_mode() -> None:
    from hlgfa_lite.method.blocks import ConditionalModulation

    block = ConditionalModulation(5, cond_channels=3, hidden=4).train()
    x, cond = torch.randn(3, 5, 4, 4) * 2 + 1, torch.randn(3, 3, 4, 4)
    gamma, beta = block.params(cond)
    torch.testing.assert_close(block(x, cond), solutions.modulate(x, gamma, beta), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("wrong", "hint"), MODULATION_MISTAKES)
def test_modulation_mistakes_get_hints_and_half_the_points(
    wrong: Callable, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hint in _rejected(exercises.check_modulation, wrong, capsys)
    parts = exercises.modulation_parts(wrong)
    assert exercises.score(parts) == 0.5 and sum(p.passed for p in parts) == 1, parts


def test_modulation_with_both_parts_wrong_raises() -> None:
    with pytest.raises(AssertionError, match="this is instance norm"):
        exercises.check_modulation(lambda x, g, b: _norm(x, (2, 3)) * (1 + 2 * g) + b)


def test_modulation_film_vectors_must_broadcast(capsys: pytest.CaptureFixture[str]) -> None:
    def reshapes(x: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if g.shape[-1] == 1:  # FiLM vectors handled wrongly: only their mean is used
            g, b = g.mean(), b.mean()
        return solutions.modulate(x, g, b)

    assert "must broadcast over positions" in _rejected(exercises.check_modulation, reshapes, capsys)


# --- gated residual --------------------------------------------------------------------------


GATE_MISTAKES = [
    (lambda x, r, g: x + g * r, "the gate must go through a sigmoid: with gate_logits=0 the output should be x + 0.5"),
    (lambda x, r, g: x + r, "the gate must go through a sigmoid"),
    (lambda x, r, g: x + torch.tanh(g) * r, "use sigmoid, not tanh"),
    (lambda x, r, g: (1 - torch.sigmoid(g)) * x + torch.sigmoid(g) * r, "not a blend"),
    (lambda x, r, g: torch.sigmoid(g) * r, "you dropped x"),
    (lambda x, r, g: torch.sigmoid(g) * x + r, "the gate multiplies the correction, not x"),
    (lambda x, r, g: x + (1 - torch.sigmoid(g)) * r, "the gate opens for large logits"),
    (lambda x, r, g: x + torch.sigmoid(g.mean(dim=(2, 3), keepdim=True)) * r, "expected x + sigmoid"),
]


def test_gated_residual_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert exercises.check_gated_residual(solutions.gated_residual) is True
    assert capsys.readouterr().out.startswith("✓ gated_residual")


@pytest.mark.parametrize(("wrong", "hint"), GATE_MISTAKES)
def test_gated_residual_mistakes_get_hints(wrong: Callable, hint: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(hint)):
        exercises.check_gated_residual(wrong)


def test_gated_residual_in_place_is_rejected() -> None:
    def in_place(x: torch.Tensor, r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x += torch.sigmoid(g) * r
        return x

    with pytest.raises(AssertionError, match="in place"):
        exercises.check_gated_residual(in_place)


# --- misalignment ----------------------------------------------------------------------------


def test_misalignment_reference_and_mistakes() -> None:
    assert exercises.check_misalignment(solutions.misalignment) is True
    mistakes = [
        (lambda h, r: (h - r).pow(2).mean(dim=1), "keep a channel axis"),
        (lambda h, r: (h - r).pow(2).sum(dim=1, keepdim=True), "not sum"),
        (lambda h, r: (h - r).abs().mean(dim=1, keepdim=True), "square the difference"),
        (lambda h, r: (h - r).pow(2).mean(dim=1, keepdim=True).sqrt(), "no square root"),
    ]
    for wrong, hint in mistakes:
        with pytest.raises(AssertionError, match=re.escape(hint)):
            exercises.check_misalignment(wrong)


# --- stubs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "checker",
    [
        exercises.check_decompose,
        exercises.check_modulation,
        exercises.check_gated_residual,
        exercises.check_misalignment,
    ],
)
def test_unattempted_stub_reports_without_raising(checker: Callable, capsys: pytest.CaptureFixture[str]) -> None:
    assert checker(_not_implemented) is False
    assert "not attempted yet" in capsys.readouterr().out


def test_checkers_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_modulation(solutions.modulate)
    exercises.check_gated_residual(solutions.gated_residual)
    torch.testing.assert_close(torch.rand(3), expected)


# --- own work: aliases of the library and torch's batch norm are rejected ----------------------


def _wrapper(features: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    return library_decompose(features, kernel)


def _inline_import(features: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    from hlgfa_lite.method.blocks import decompose as mine

    return mine(features, kernel)


def _closure_alias() -> Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]:
    reference = library_decompose
    return lambda features, kernel: reference(features, kernel)


@pytest.mark.parametrize(
    "answer",
    [library_decompose, _wrapper, _inline_import, _closure_alias(), functools.partial(library_decompose)],
    ids=["alias", "wrapper", "inline_import", "closure", "partial"],
)
def test_check_decompose_rejects_the_library_function(answer: Callable) -> None:
    with pytest.raises(AssertionError, match=r"write it yourself.*hlgfa_lite"):
        exercises.check_decompose(answer)


def _module_bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return torch.nn.BatchNorm2d(x.shape[1], affine=False)(x) * (1 + gamma) + beta


def _functional_bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, None, None, training=True) * (1 + gamma) + beta


NOTEBOOK_BN = torch.nn.BatchNorm2d(3, affine=False).train()  # notebook 04 once defined one like it


def _renamed_bn(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return NOTEBOOK_BN(x) * (1 + gamma) + beta


@pytest.mark.parametrize("answer", [_module_bn, _functional_bn, _renamed_bn], ids=["module", "functional", "global"])
def test_check_modulation_rejects_torchs_batch_norm(answer: Callable) -> None:
    for x in (torch.randn(4, 3, 6, 5),):
        assert torch.allclose(answer(x, torch.zeros_like(x), torch.zeros_like(x)), solutions.batch_norm(x), atol=1e-4)
    with pytest.raises(AssertionError, match=r"write it yourself.*batch norm"):
        exercises.check_modulation(answer)


def test_own_work_accepts_the_reference_solutions() -> None:
    from hlgfa_lite.course.own_work import borrowed

    for name in ("decompose", "modulate", "gated_residual", "misalignment"):
        assert borrowed(getattr(solutions, name), batch_norm=True) == [], name


def batch_norm(x: torch.Tensor) -> torch.Tensor:  # a student's own helper that happens to share torch's name
    return solutions.batch_norm(x)


def test_own_work_accepts_a_helper_named_like_torchs() -> None:
    assert exercises.check_modulation(lambda x, gamma, beta: batch_norm(x) * (1 + gamma) + beta) is True


# --- notebook 5b: the normal model ---------------------------------------------------------------


def _nearest(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    d = queries.pow(2).sum(1, keepdim=True) - 2 * queries @ memory.T + memory.pow(2).sum(1)
    return d.min(dim=1).values.clamp_min(0.0)


def _yardstick(train_cells: torch.Tensor) -> torch.Tensor:
    n = train_cells.shape[0]
    rows = [_nearest(train_cells[i], torch.cat([train_cells[j] for j in range(n) if j != i])) for i in range(n)]
    return torch.stack(rows).mean(dim=0)


def test_normal_model_references_pass() -> None:
    from hlgfa_lite.course import exercises_normal as ex

    assert ex.check_nearest_distance(_nearest) is True
    assert ex.check_position_yardstick(_yardstick) is True
    assert ex.check_nearest_distance(_not_implemented) is False


def _unclamped(q: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (q.pow(2).sum(1, keepdim=True) - 2 * q @ m.T + m.pow(2).sum(1)).min(dim=1).values


@pytest.mark.parametrize(
    ("wrong", "hint", "share"),
    [
        (lambda q, m: _nearest(q, m).sqrt(), "squared", 0.0),
        (lambda q, m: torch.cdist(q, m).pow(2).max(dim=1).values, "smallest", 0.0),
        (lambda q, m: torch.cdist(q, m).pow(2).mean(dim=1), "not the mean", 0.0),
        (_unclamped, "never", 0.75),  # the distance right, the rounding not
    ],
)
def test_nearest_distance_mistakes_get_hints(
    wrong: Callable, hint: str, share: float, capsys: pytest.CaptureFixture[str]
) -> None:
    from hlgfa_lite.course import exercises_normal as ex

    assert hint in _rejected(ex.check_nearest_distance, wrong, capsys)
    assert ex.score(ex.nearest_distance_parts(wrong)) == pytest.approx(share)


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda c: torch.stack([_nearest(c[i], c.flatten(0, 1)) for i in range(len(c))]).mean(0), "leave the image"),
        (lambda c: _yardstick(c).mean().expand(c.shape[1]).clone(), "one value for all positions"),
        (lambda c: _yardstick(c.transpose(0, 1)).clone()[: c.shape[0]], "per \\*position\\*"),
    ],
)
def test_position_yardstick_mistakes_get_hints(wrong: Callable, hint: str) -> None:
    from hlgfa_lite.course import exercises_normal as ex

    with pytest.raises(AssertionError, match=hint):
        ex.check_position_yardstick(wrong)


def test_normal_model_checkers_reject_the_library() -> None:
    from hlgfa_lite.course import exercises_normal as ex
    from hlgfa_lite.method.scoring.memory_bank import nearest_sq_distance

    with pytest.raises(AssertionError, match="write it yourself"):
        ex.check_nearest_distance(lambda q, m: nearest_sq_distance(q, m, m.pow(2).sum(1)))
    with pytest.raises(AssertionError, match="write it yourself"):
        ex.check_position_yardstick(ex.reference_position_yardstick)


# --- the yardstick is judged on its own, whatever nearest_distance it calls -----------------------


def _notebook_5b(nearest_source: str) -> dict:
    """A notebook namespace: a nearest_distance from ``nearest_source`` and the reference yardstick calling it."""
    namespace: dict = {"torch": torch}
    exec(nearest_source, namespace)
    exec(
        "def position_yardstick(train_cells):\n"
        "    n = train_cells.shape[0]\n"
        "    rows = [nearest_distance(train_cells[i], torch.cat([train_cells[j] for j in range(n) if j != i]))\n"
        "            for i in range(n)]\n"
        "    return torch.stack(rows).mean(dim=0)\n",
        namespace,
    )
    return namespace


@pytest.mark.parametrize(
    "nearest",
    [
        "def nearest_distance(q, m):\n    return torch.cdist(q, m).min(dim=1).values  # forgot the square",
        "def nearest_distance(q, m):\n    raise NotImplementedError",
    ],
    ids=["wrong", "stub"],
)
def test_right_yardstick_on_a_wrong_nearest_distance_passes_and_names_the_cause(
    nearest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from hlgfa_lite.course import exercises_normal as ex

    namespace = _notebook_5b(nearest)
    own_search = namespace["nearest_distance"]
    assert ex.check_position_yardstick(namespace["position_yardstick"]) is True
    printed = capsys.readouterr().out
    assert printed.startswith("✓ position_yardstick") and "fix nearest_distance" in printed, printed
    assert namespace["nearest_distance"] is own_search  # the stand-in is gone again
    parts, note = ex.position_yardstick_parts(namespace["position_yardstick"])
    assert ex.score(parts) == 1.0 and "nearest_distance" in note


def test_wrong_yardstick_on_a_wrong_nearest_distance_fails_with_its_own_mistake() -> None:
    from hlgfa_lite.course import exercises_normal as ex

    namespace = _notebook_5b("def nearest_distance(q, m):\n    return torch.cdist(q, m).min(dim=1).values")
    own_memory = (
        "def position_yardstick(c):\n    return nearest_distance(c.flatten(0, 1), c.flatten(0, 1)).view(c.shape[:2])"
    )
    exec(own_memory + ".mean(0)", namespace)
    with pytest.raises(AssertionError, match="leave the image's own cells out"):
        ex.check_position_yardstick(namespace["position_yardstick"])
