"""Checkers for the course exercises: run a student's tensor function on small cases.

Each ``check_*`` calls the student's function on several tiny tensors, compares it
with a reference, part by part (an exercise with separable parts – ``decompose``'s low-pass
inside and at the borders and its remainder, ``modulate``'s normalisation and its modulation,
``nearest_distance``'s distance and its rounding – is judged per part, :class:`Part`), and then

* prints ``✓ ...`` and returns ``True`` when every part passes;
* prints ``✗ ...`` with a specific hint for each failing part and returns ``False`` when some
  parts pass (the hidden tests give those parts' share of the points);
* raises :class:`AssertionError` with the hints when no part passes (it recognises the usual
  mistakes: a forgotten sigmoid, instance instead of batch norm, darkened borders ...);
* prints ``… not attempted yet`` and returns ``False`` when the function still raises
  :class:`NotImplementedError` (the notebook stub), so "Run all" never stops there.

Student function signatures:

* ``decompose(features, kernel) -> (structure, detail)``: box low-pass over
  ``kernel x kernel`` cells (borders averaged over the cells that exist) and the
  remainder, for (B, C, H, W) features.
* ``modulate(x, gamma, beta) -> out``: ``norm(x) * (1 + gamma) + beta`` where ``norm``
  is a **parameter-free batch norm that the function computes itself**: per channel,
  mean and biased variance over batch and positions (dims 0, 2, 3), ``eps = 1e-5``
  (what ``nn.BatchNorm2d(affine=False)`` does in training mode). ``gamma``/``beta``
  are (B, C, H, W) maps (SPADE) or (B, C, 1, 1) vectors (FiLM).
* ``gated_residual(x, correction, gate_logits) -> out``: ``x + sigmoid(gate_logits) * correction``
  with a (B, 1, H, W) gate broadcast over channels.
* ``misalignment(high, refined) -> energy``: mean over channels of the squared
  difference, shape (B, 1, h, w).

Where the references come from. The exercise solutions are not part of the installed
package (they live in the instructor's nbgrader source notebooks, ``course/source/``); the
checkers compare against the model's own code instead, never against the exercise
written out in its exact form:

* ``decompose``: :func:`hlgfa_lite.method.blocks.decompose`, the block the model runs (re-creating
  a library block is the point of that exercise; the block is the model, not a solution key);
* ``modulate``: torch's ``nn.BatchNorm2d(affine=False)`` in training mode for ``norm(x)``, and
  the library's :class:`~hlgfa_lite.method.blocks.ConditionalModulation` ``forward`` fed the test's
  ``gamma``/``beta`` in place of its learned ones;
* ``gated_residual``: the library's :class:`~hlgfa_lite.method.blocks.GatedResidual` ``forward`` with
  its correction and gate networks replaced by the test's fixed tensors;
* ``misalignment``: inputs built so that the answer is known by construction
  (``high = refined + d`` with the per-cell mean of ``d**2`` chosen in advance).

Every checker first rejects an answer that is not the student's own work (:mod:`.own_work`): an alias
or a wrapper of the library function, and for ``modulate`` any use of torch's batch norm.
``own_work=False`` skips that, for showing that the library's own block passes the same checks.

The hints recognise wrong variants (instance norm, a missing sigmoid ...); they never spell
out the complete answer beyond what the exercise text says.
"""

from __future__ import annotations

import builtins
import contextlib
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..method.blocks import ConditionalModulation, GatedResidual, decompose
from .own_work import MARKER, require_own_work

__all__ = [
    "Part",
    "check_decompose",
    "check_gated_residual",
    "check_misalignment",
    "check_modulation",
    "decompose_parts",
    "gated_residual_parts",
    "modulation_parts",
]


class _NotAttempted(Exception):
    """The student's function still raises NotImplementedError."""


SEED_OFFSET = 0
"""Added to every case's seed. 0 for the visible checks; the grader draws a fresh one for each hand-in, so the
cases it judges on cannot be known (and their answers learnt by heart) in advance."""
WATCH: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
"""Runs around each call of the student's function; the grader's watches what runs inside
(:class:`.own_work.Watch`)."""


def redraw_cases() -> None:
    """New cases for a judgement made again (the yardstick with the reference search standing in): a function that
    remembered what it was given the first time meets inputs it has not seen. Only while grading (the visible
    checks keep their cases)."""
    global SEED_OFFSET
    if SEED_OFFSET:
        SEED_OFFSET = 1 + secrets.randbelow(2**31)


BUILTIN_ERRORS = frozenset(v for v in vars(builtins).values() if isinstance(v, type) and issubclass(v, BaseException))


def _plain(exc: BaseException) -> bool:
    """A built-in exception with plain arguments: its message runs none of the student's code."""
    return type(exc) in BUILTIN_ERRORS and all(type(a) in (str, int, float, bool) for a in exc.args)


def kind_name(value: object) -> str:
    """The name of ``value``'s class, read past any metaclass (whose ``__name__`` could run the student's code)."""
    return type.__dict__["__name__"].__get__(type(value), type)


def said(exc: BaseException) -> str:
    """An exception's type and message, with none of the student's code run to build them: a built-in exception
    with plain arguments in full, any other by its class name alone (its ``__str__`` could be anything)."""
    name = kind_name(exc)
    return (f"{name}: {exc}" if exc.args else name) if _plain(exc) else name


def hint_of(exc: AssertionError) -> str:
    """A failed case's hint (the checker's message), or :func:`said` of an assertion the student's code raised."""
    return str(exc) if type(exc) is AssertionError and _plain(exc) else said(exc)


def _gen(seed: int = 0, *, fixed: bool = False) -> torch.Generator:
    return torch.Generator().manual_seed(seed + (0 if fixed else SEED_OFFSET))


def _randn(*shape: int, seed: int = 0, fixed: bool = False) -> torch.Tensor:
    """Random test features; ``fixed``: the same for every hand-in (a part judged only once a part on fresh
    cases passed: its rounding behaviour is known for that seed)."""
    return torch.randn(*shape, generator=_gen(seed, fixed=fixed))


def _call(fn: Callable[..., Any], *args: torch.Tensor | int) -> Any:
    """Call the student's function on copies of the inputs; inputs must stay unchanged.

    Warnings are silenced (nbgrader scores a graded cell that writes to stderr 0)."""
    require_no_torch_mode()
    copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    try:
        with WATCH(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = fn(*copies)
                # its items taken out here, under the watch, and copied (what the function keeps of its outputs cannot
                # change the checker's copy); inline: a helper's frame here would be the library's code to the watch
                items = list(out) if isinstance(out, tuple | list) else [out]
                for i in range(len(items)):
                    if type(items[i]) is torch.Tensor:
                        items[i] = items[i].clone()
                out = tuple(items) if isinstance(out, tuple | list) else items[0]
            except BaseException as exc:  # its frames (a generator's finally) are let go here, under the watch
                exc.__traceback__ = exc.__context__ = exc.__cause__ = None
                raise
    except NotImplementedError:
        raise _NotAttempted from None
    require_no_torch_mode()
    for before, after in zip(args, copies, strict=True):
        if isinstance(before, torch.Tensor) and not torch.equal(before, after):
            raise AssertionError(
                "do not modify the inputs in place: build a new tensor (e.g. out = x + ..., not x += ...)"
            )
    return out


class Tampered(AssertionError):
    """The notebook changed how the grader runs: nothing is judged (not a failed case of one part)."""


def require_no_torch_mode() -> None:
    """Refuse to go on while a torch function or dispatch mode is active (but torch's own ``with torch.device``): a
    mode runs its own code inside every torch call the grader makes, after the watch."""
    from torch.overrides import _get_current_function_mode_stack

    function_modes = [m for m in _get_current_function_mode_stack() if type(m).__name__ != "DeviceContext"]
    if function_modes or torch._C._len_torch_dispatch_stack():
        raise Tampered(f"{MARKER} – a torch mode is active (it would run inside the grader's own torch calls)")


def _tensor(value: Any, what: str, shape: torch.Size) -> torch.Tensor:
    if type(value) is not torch.Tensor:  # a subclass could answer torch's comparisons itself
        raise AssertionError(f"{what} must be a plain torch.Tensor, got {kind_name(value)}")
    if value.shape != shape:
        raise AssertionError(f"{what} must keep the input shape {tuple(shape)}, got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise AssertionError(f"{what} contains NaN or inf; check for a division by zero (add eps)")
    return value


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-4))


def _maxerr(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"max abs error {float((a - b).abs().max()):.3g}"


@dataclass(frozen=True)
class Part:
    """A separable part of an exercise: its share of the points and, when it fails, the hint."""

    label: str
    weight: float
    hint: str | None = None
    judged: bool = True
    """False: not judged, because a part it builds on failed (its hint says which)."""

    @property
    def passed(self) -> bool:
        return self.hint is None


def _part(label: str, weight: float, check: Callable[[], None], *, needs: Part | None = None) -> Part:
    """Run one part's cases: passed, or failed with the hint of its first failing case.

    ``needs``: a part this one can only be judged after (the borders of a low-pass that is wrong inside)."""
    if needs is not None and not needs.passed:
        return Part(label, weight, f"judged once {needs.label} is right", judged=False)
    try:
        check()
    except Tampered:
        raise
    except AssertionError as exc:  # a case failed: its hint (or what the student's code raised)
        return Part(label, weight, hint_of(exc))
    except _NotAttempted:
        raise
    except Exception as exc:  # the student's code raised: say what, on which part
        return Part(label, weight, f"your function raised {said(exc)}")
    return Part(label, weight)


def score(parts: Sequence[Part]) -> float:
    """The share of the points the parts earn (0 … 1)."""
    return sum(p.weight for p in parts if p.passed)


def _run(name: str, body: Callable[[], tuple[list[Part], str]]) -> bool:
    try:
        parts, summary = body()
    except _NotAttempted:
        print(
            f"… {name}: not attempted yet (your function raises NotImplementedError); "
            "write it in the cell above, then re-run this cell"
        )
        return False
    failed = [p for p in parts if not p.passed]
    if not failed:
        print(f"✓ {name}: {summary}")
        return True
    if len(failed) == len(parts):
        raise AssertionError("; ".join(dict.fromkeys(p.hint for p in failed if p.hint and p.judged)))
    right = ", ".join(p.label for p in parts if p.passed)
    lines = [f"✗ {name}: {len(parts) - len(failed)} of {len(parts)} parts right ({right}); still wrong:"]
    lines += [f"  ✗ {p.label}: {p.hint}" for p in failed]
    print("\n".join(lines))
    return False


# ---------------------------------------------------------------------------------------------
# decompose
# ---------------------------------------------------------------------------------------------


def _split(out: Any, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(out, tuple | list) or len(out) != 2:
        raise AssertionError("return a tuple of two tensors: (structure, detail)")
    return _tensor(out[0], "structure", shape), _tensor(out[1], "detail", shape)


_Decompose = Callable[[torch.Tensor, int], Any]
_DECOMPOSE_CASES = ((5, (2, 3, 12, 10), 1), (3, (2, 4, 8, 8), 2), (5, (1, 6, 16, 16), 3), (7, (2, 2, 7, 9), 4))
"""(kernel, shape, seed) of the random features every part is judged on."""


def _decompose_outputs(fn: _Decompose, extra: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, int, tuple]]:
    """(features, kernel, (structure, detail)) for the random cases, kernel 1, and ``extra`` features at kernels
    1, 3, 5, 7. Raises (no part can be judged) for a wrong type or shape, in-place changes, swapped outputs."""
    cases = [(_randn(*shape, seed=seed), kernel) for kernel, shape, seed in _DECOMPOSE_CASES]
    cases.append((cases[0][0], 1))
    cases += [(f, k) for f in extra for k in (1, 3, 5, 7)]
    outputs = [(x, k, _split(_call(fn, x, k), x.shape)) for x, k in cases]
    x, k, (structure, detail) = outputs[0]
    ref_s, ref_d = decompose(x, k)
    if _close(structure, ref_d) and _close(detail, ref_s):
        raise AssertionError(
            "structure and detail are swapped: structure is the smooth low-pass part, detail the remainder"
        )
    return outputs


def _inside(t: torch.Tensor, kernel: int) -> torch.Tensor:
    pad = kernel // 2
    h, w = t.shape[-2:]
    return t[..., pad : h - pad, pad : w - pad] if h > 2 * pad and w > 2 * pad else t[..., :0, :0]


def _decompose_inside(fn: _Decompose, outputs: list[tuple[torch.Tensor, int, tuple]]) -> None:
    """The box low-pass wherever the whole kernel x kernel box lies inside the map."""
    const = torch.full((1, 2, 9, 9), 3.0)
    s_const, _ = _split(_call(fn, const, 5), const.shape)
    if not _close(_inside(s_const, 5), _inside(const, 5)):
        raise AssertionError(
            "the structure prior of a constant map must be that same constant: average the features, "
            f"do not sum them ({_maxerr(_inside(s_const, 5), _inside(const, 5))})"
        )
    spike = torch.zeros(2, 3, 11, 11)
    spike[0, 1, 5, 5] = 1.0
    s_spike, _ = _split(_call(fn, spike, 3), spike.shape)
    if s_spike[0, [0, 2]].abs().max() > 1e-6 or s_spike[1].abs().max() > 1e-6:
        raise AssertionError(
            "filter each channel of each image on its own: a spike in one channel must not leak into "
            "other channels or other images (use avg_pool2d, not a convolution across channels)"
        )
    box = s_spike[0, 1]
    outside = float(box.abs().sum() - box[4:7, 4:7].abs().sum())
    if not (_close(box[4:7, 4:7], torch.full((3, 3), 1 / 9)) and abs(outside) < 1e-6):
        raise AssertionError(
            "the low-pass is a box (plain average) over kernel x kernel cells centred on each cell: "
            "with kernel=3 a unit spike must become a 3x3 square of 1/9 "
            "(stride 1, padding kernel // 2, borders averaged over the cells that exist)"
        )
    for x, kernel, (structure, _) in outputs:
        if kernel == 1 and not _close(structure, x):
            raise AssertionError("with kernel=1 the low-pass keeps everything: structure == features and detail == 0")
        want = _inside(decompose(x, kernel)[0], kernel)
        if not _close(_inside(structure, kernel), want):
            raise AssertionError(
                f"kernel={kernel}, shape {tuple(x.shape)}: structure differs from the box low-pass away from the "
                f"borders ({_maxerr(_inside(structure, kernel), want)}); average over the kernel x kernel cells "
                "around each cell, stride 1, padding kernel // 2"
            )


def _decompose_borders(fn: _Decompose, outputs: list[tuple[torch.Tensor, int, tuple]]) -> None:
    """At the borders the box averages the cells that exist (a constant map stays constant)."""
    const = torch.full((1, 2, 9, 9), 3.0)
    s_const, _ = _split(_call(fn, const, 5), const.shape)
    if not _close(s_const, const):
        raise AssertionError(
            "a constant map must stay constant up to its edges: use count_include_pad=False so "
            "borders are not darkened (the padded zeros must not enter the average)"
        )
    for x, kernel, (structure, _) in outputs:
        want = decompose(x, kernel)[0]
        if not _close(structure, want):
            raise AssertionError(
                f"kernel={kernel}, shape {tuple(x.shape)}: the structure differs from the box low-pass at the "
                f"borders ({_maxerr(structure, want)}); average over the cells that exist (count_include_pad=False)"
            )


def _decompose_remainder(outputs: list[tuple[torch.Tensor, int, tuple]]) -> None:
    """detail == features - structure, whatever the structure is."""
    for x, _kernel, (structure, detail) in outputs:
        if not _close(structure + detail, x, atol=1e-5):
            raise AssertionError(
                "structure + detail must equal the input exactly: compute detail = features - structure "
                f"({_maxerr(structure + detail, x)})"
            )
        if _close(structure, x) and not _close(detail, torch.zeros_like(x)):
            raise AssertionError("where structure == features (kernel=1) the detail must be 0")


def decompose_parts(fn: _Decompose, extra: Sequence[torch.Tensor] = ()) -> list[Part]:
    """``decompose``'s three parts: the box low-pass inside the map (1/2 of the points), at its borders
    (1/4, judged once the inside is right) and the detail as the remainder (1/4). ``extra``: more features
    (the notebook's own), checked at kernels 1, 3, 5 and 7."""
    outputs = _decompose_outputs(fn, extra)
    inside = _part("box low-pass away from the borders", 0.5, lambda: _decompose_inside(fn, outputs))
    return [
        inside,
        _part(
            "borders averaged over the cells that exist", 0.25, lambda: _decompose_borders(fn, outputs), needs=inside
        ),
        _part("detail = features - structure", 0.25, lambda: _decompose_remainder(outputs)),
    ]


def check_decompose(
    fn: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]], *, own_work: bool = True
) -> bool:
    """Check ``fn(features, kernel) -> (structure, detail)`` against :func:`hlgfa_lite.method.blocks.decompose`."""

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "decompose")
        summary = "structure + detail == features, box low-pass, borders not darkened, channels kept apart (8 cases)"
        return decompose_parts(fn), summary

    return _run("decompose", body)


# ---------------------------------------------------------------------------------------------
# modulation
# ---------------------------------------------------------------------------------------------


BN_EPS = 1e-5
"""The epsilon of ``nn.BatchNorm2d`` (added to the variance before the square root)."""


def _torch_batch_norm(x: torch.Tensor, unbiased: bool = False) -> torch.Tensor:
    """torch's own parameter-free batch norm of ``x`` in training mode (batch statistics).

    ``unbiased=True``: the same with the unbiased batch variance (a common mistake), read from the
    running statistics of a momentum-1 batch norm, which torch keeps unbiased.
    """
    bn = nn.BatchNorm2d(x.shape[1], eps=BN_EPS, affine=False, momentum=1.0)
    with torch.no_grad():
        out = bn.train()(x)
        return bn.eval()(x) if unbiased else out


def _block_modulate(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """What the library's ConditionalModulation block (training mode) makes of ``x`` with these gamma, beta."""
    with torch.random.fork_rng():  # the block's (unused) conv layers draw from the global RNG
        block = ConditionalModulation(x.shape[1], cond_channels=1, hidden=1)
    block.params = lambda _cond: (gamma, beta)  # its own forward, fed the test's parameters
    with torch.no_grad():
        return block.train()(x, x[:, :1])


class _Fixed(nn.Module):
    """A stand-in sub-network that returns a fixed tensor, whatever its input."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, *_inputs: torch.Tensor) -> torch.Tensor:
        return self.value


def _block_gated_residual(x: torch.Tensor, correction: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
    """What the library's GatedResidual block makes of ``x`` when its networks output these tensors."""
    with torch.random.fork_rng():
        block = GatedResidual(x.shape[1], cond_channels=1, hidden=4)
    block.correction, block.gate = _Fixed(correction), _Fixed(gate_logits)
    with torch.no_grad():
        return block(x, x[:, :1])


def _diagnose_norm(out: torch.Tensor, x: torch.Tensor) -> str:
    """Hint for a wrong ``modulate(x, 0, 0)`` (which must be the batch norm of x)."""
    if _close(out, torch.zeros_like(x)):
        return "the scale is (1 + gamma), not gamma: with gamma = 0 and beta = 0 the output must be norm(x), not 0"
    if _close(out, x):
        return (
            "normalise x first: with gamma = beta = 0 the output must be norm(x) (zero mean, unit variance "
            "per channel), not x itself"
        )
    if _close(out, F.instance_norm(x, eps=BN_EPS)):
        return (
            "this is instance norm (statistics per image); use batch norm: per channel, mean and variance "
            "over the batch and all positions, dims (0, 2, 3)"
        )
    if _close(out, F.layer_norm(x, x.shape[1:], eps=BN_EPS)) or _close(out, F.layer_norm(x, x.shape, eps=BN_EPS)):
        return "normalise each channel separately: mean and variance over dims (0, 2, 3), not across channels"
    if _close(out, _torch_batch_norm(x, unbiased=True), atol=1e-5):
        return "use the biased variance (unbiased=False), as batch norm does"
    if _close(out, x - x.mean(dim=(0, 2, 3), keepdim=True)):
        return "divide by the standard deviation too: norm(x) = (x - mean) / sqrt(var + 1e-5)"
    return (
        "with gamma = beta = 0 the output must be norm(x) = (x - mean) / sqrt(var + 1e-5), mean and biased "
        "variance per channel over (batch, H, W)"
    )


_Modulate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _modulation_input() -> tuple[torch.Tensor, torch.Tensor]:
    """Features whose channels have different means and scales, and their batch norm."""
    scale = torch.tensor([0.5, 1.0, 3.0]).view(1, 3, 1, 1)
    offset = torch.tensor([-2.0, 0.0, 3.0]).view(1, 3, 1, 1)
    x = _randn(4, 3, 6, 5, seed=10) * scale + offset
    return x, _torch_batch_norm(x)


def _modulation_norm(fn: _Modulate, x: torch.Tensor, norm_x: torch.Tensor) -> None:
    """gamma = beta = 0: the output is norm(x) (or, if the scale forgot its 1 +, gamma = 1 gives norm(x))."""
    zeros = torch.zeros_like(x)
    out = _tensor(_call(fn, x, zeros, zeros), "the output", x.shape)
    if _close(out, norm_x):
        return
    if _close(out, zeros):  # norm(x) * gamma + beta: the normalisation may still be right
        out = _tensor(_call(fn, x, torch.ones_like(x), zeros), "the output", x.shape)
        if _close(out, norm_x):
            return
    raise AssertionError(_diagnose_norm(out, x))


def _own_norm(fn: _Modulate, x: torch.Tensor) -> torch.Tensor:
    """The student's own normalisation of ``x``: what the function gives with gamma = beta = 0."""
    zeros = torch.zeros_like(x)
    out = _tensor(_call(fn, x, zeros, zeros), "the output", x.shape)
    if _close(out, zeros):
        raise AssertionError(
            "the scale is (1 + gamma), not gamma: with gamma = 0 and beta = 0 the output must be norm(x), not 0"
        )
    return out


def _modulation_gamma(fn: _Modulate, x: torch.Tensor, norm_x: torch.Tensor) -> None:
    """gamma = 1, beta = 0: the output is 2 * norm(x)."""
    zeros = torch.zeros_like(x)
    out = _tensor(_call(fn, x, torch.ones_like(x), zeros), "the output", x.shape)
    if _close(out, norm_x):
        raise AssertionError(
            "gamma has no effect: with gamma = 1 the output must be 2 * norm(x). Scale the normalised "
            "features, norm(x) * (1 + gamma); a scale applied before normalising is undone by it"
        )
    if not _close(out, 2 * norm_x):
        raise AssertionError(
            "gamma must scale the normalised features: out = norm(x) * (1 + gamma) + beta, so with "
            f"gamma = 1 and beta = 0 the output is 2 * norm(x) ({_maxerr(out, 2 * norm_x)})"
        )


def _modulation_beta(fn: _Modulate, x: torch.Tensor, norm_x: torch.Tensor) -> None:
    """gamma = 0, beta = 0.5: the output is norm(x) + 0.5."""
    half = torch.full_like(x, 0.5)
    out = _tensor(_call(fn, x, torch.zeros_like(x), half), "the output", x.shape)
    if not _close(out, norm_x + 0.5):
        hint = " (beta added before the normalisation is removed again by it)" if _close(out, norm_x) else ""
        raise AssertionError(
            f"beta must be added after normalising: with gamma = 0 and beta = 0.5 the output is norm(x) + 0.5{hint}"
        )


def _modulation_spade(fn: _Modulate, x: torch.Tensor, norm_x: torch.Tensor, seed: int = 11) -> None:
    """Random (B, C, H, W) gamma/beta maps, as the block applies them."""
    gamma, beta = 0.5 * _randn(*x.shape, seed=seed), _randn(*x.shape, seed=seed + 1)
    out = _tensor(_call(fn, x, gamma, beta), "the output", x.shape)
    want = norm_x * (1 + gamma) + beta
    if not _close(out, want):
        if _close(out, (norm_x + beta) * (1 + gamma)):
            raise AssertionError(
                "add beta after scaling: norm(x) * (1 + gamma) + beta, not (norm(x) + beta) * (1 + gamma)"
            )
        if _close(out, _torch_batch_norm(x * (1 + gamma) + beta)):
            raise AssertionError("normalise x before modulating it, not after: norm(x) * (1 + gamma) + beta")
        raise AssertionError(
            "with spatial gamma/beta maps the output must be norm(x) * (1 + gamma) + beta, element by "
            f"element ({_maxerr(out, want)})"
        )


def _modulation_film(fn: _Modulate, x: torch.Tensor, norm_x: torch.Tensor) -> None:
    """(B, C, 1, 1) gamma/beta vectors broadcast over positions."""
    g_vec = 0.5 * _randn(x.shape[0], x.shape[1], 1, 1, seed=14)
    b_vec = _randn(x.shape[0], x.shape[1], 1, 1, seed=15)
    out = _tensor(_call(fn, x, g_vec, b_vec), "the output", x.shape)
    if not _close(out, norm_x * (1 + g_vec) + b_vec):
        raise AssertionError(
            "FiLM-style gamma/beta of shape (B, C, 1, 1) must broadcast over positions: use plain "
            "element-wise arithmetic, no reshaping"
        )


def _same_as_block(out: torch.Tensor, want: torch.Tensor, message: str) -> None:
    """Raise ``message`` (``{err}``: the largest difference) unless ``out`` equals the library block's ``want``."""
    if not _close(out, want):
        raise AssertionError(message.format(err=_maxerr(out, want)))


def _modulation_matches_block(fn: _Modulate, x: torch.Tensor) -> None:
    """The library's ConditionalModulation block (training mode), fed its own gamma/beta; and fed the test's."""
    gamma, beta = 0.5 * _randn(*x.shape, seed=11), _randn(*x.shape, seed=12)
    _same_as_block(
        _tensor(_call(fn, x, gamma, beta), "the output", x.shape),
        _block_modulate(x, gamma, beta),
        "your function differs from the library's ConditionalModulation block (training mode) ({err}); "
        "use eps = 1e-5 in sqrt(var + eps)",
    )
    with torch.random.fork_rng():  # leaves the caller's global RNG untouched
        torch.manual_seed(0)
        block = ConditionalModulation(x.shape[1], cond_channels=2, hidden=8)
        for layer in (block.to_gamma, block.to_beta):  # leave the identity start: non-trivial gamma/beta
            nn.init.normal_(layer.weight, std=0.2)
    block.train()
    cond = _randn(x.shape[0], 2, *x.shape[2:], seed=13)
    with torch.no_grad():
        g, b = block.params(cond)
        want = block(x, cond)
    _same_as_block(
        _tensor(_call(fn, x, g, b), "the output", x.shape),
        want,
        "your function differs from the library's ConditionalModulation block (training mode) ({err}); "
        "use eps = 1e-5 in sqrt(var + eps)",
    )


def modulation_parts(fn: _Modulate, extra: Sequence[torch.Tensor] = ()) -> list[Part]:
    """``modulate``'s two parts, each half the points: the batch norm it computes (gamma = beta = 0), and the
    modulation of *its own* normalised features (``(1 + gamma)`` scale, ``beta`` shift, maps and vectors) –
    a wrong normalisation does not cost the modulation's points, nor the reverse. ``extra``: more inputs
    (the notebook's own features)."""
    inputs = [_modulation_input()[0], *extra]

    def normalisation() -> None:
        for x in inputs:
            _modulation_norm(fn, x, _torch_batch_norm(x))

    def modulation() -> None:
        for i, x in enumerate(inputs):
            own = _own_norm(fn, x)
            _modulation_gamma(fn, x, own)
            _modulation_beta(fn, x, own)
            _modulation_spade(fn, x, own, seed=11 + 10 * i)
            _modulation_film(fn, x, own)

    norm = _part("batch norm per channel over (batch, H, W)", 0.5, normalisation)
    scale = _part("(1 + gamma) scale and beta shift, maps and vectors", 0.5, modulation)
    if norm.passed and scale.passed:  # both right: the whole must be the library's block (eps, dtype ...)
        block = _part(norm.label, 0.5, lambda: _modulation_matches_block(fn, inputs[0]))
        norm = block if not block.passed else norm
    return [norm, scale]


def check_modulation(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], *, own_work: bool = True
) -> bool:
    """Check ``fn(x, gamma, beta) = batch_norm(x) * (1 + gamma) + beta`` (the student normalises x)."""

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "modulate", batch_norm=True)
        summary = (
            "batch norm per channel, (1 + gamma) scale, beta shift, SPADE maps and FiLM vectors, "
            "matches the ConditionalModulation block (6 cases)"
        )
        return modulation_parts(fn), summary

    return _run("modulate", body)


# ---------------------------------------------------------------------------------------------
# gated residual
# ---------------------------------------------------------------------------------------------


def _diagnose_gate(out: torch.Tensor, x: torch.Tensor, r: torch.Tensor, logits: torch.Tensor) -> str | None:
    g = torch.sigmoid(logits)
    if _close(out, x + logits * r) or _close(out, x + r) or _close(out, x):
        return (
            "the gate must go through a sigmoid: with gate_logits=0 the output should be x + 0.5*correction "
            "(sigmoid(0) = 0.5)"
        )
    if _close(out, x + torch.tanh(logits) * r):
        return "use sigmoid, not tanh: the gate must lie in (0, 1) (sigmoid(0) = 0.5)"
    if _close(out, (1 - g) * x + g * r):
        return (
            "not a blend: x passes through unchanged, out = x + sigmoid(gate_logits) * correction "
            "(a closed gate leaves x as it is)"
        )
    if _close(out, g * r):
        return "keep the residual path: out = x + sigmoid(gate_logits) * correction (you dropped x)"
    if _close(out, g * x + r):
        return "the gate multiplies the correction, not x: out = x + sigmoid(gate_logits) * correction"
    if _close(out, x + (1 - g) * r):
        return "the gate opens for large logits: use sigmoid(gate_logits), not 1 - sigmoid(gate_logits)"
    return None


def _gated_residual_cases(fn: _Modulate, extra: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    x, r = _randn(2, 4, 5, 6, seed=20), _randn(2, 4, 5, 6, seed=21)
    zero = torch.zeros(2, 1, 5, 6)
    for logits, name in (
        (_randn(2, 1, 5, 6, seed=22) * 3, "random gate_logits"),
        (zero, "gate_logits=0"),
    ):
        out = _tensor(_call(fn, x, r, logits), "the output", x.shape)
        want = _block_gated_residual(x, r, logits)
        if not _close(out, want):
            hint = _diagnose_gate(out, x, r, logits)
            raise AssertionError(
                hint or f"{name}: expected x + sigmoid(gate_logits) * correction ({_maxerr(out, want)})"
            )

    out = _tensor(_call(fn, x, r, torch.full_like(zero, -30.0)), "the output", x.shape)
    if not _close(out, x):
        raise AssertionError("with a closed gate (gate_logits -> -inf) the output must be x itself")
    out = _tensor(_call(fn, x, r, torch.full_like(zero, 30.0)), "the output", x.shape)
    if not _close(out, x + r):
        raise AssertionError("with an open gate (gate_logits -> +inf) the output must be x + correction")

    x_cond = [(x, _randn(2, 3, 5, 6, seed=23))] + ([extra] if extra is not None else [])
    for xx, cond in x_cond:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            block = GatedResidual(xx.shape[1], cond_channels=cond.shape[1], hidden=8)
        with torch.no_grad():
            correction = block.correction(torch.cat([xx, cond], dim=1))
            logits = block.gate(cond)
            want = block(xx, cond)
        _same_as_block(
            _tensor(_call(fn, xx, correction, logits), "the output", xx.shape),
            want,
            "your function differs from the library's GatedResidual block: the (B, 1, H, W) gate must "
            "broadcast over the channels ({err})",
        )
        closed = _tensor(_call(fn, xx, correction, logits - 40), "the output", xx.shape)
        if not _close(closed, xx, atol=1e-5):
            raise AssertionError("with a closed gate (gate_logits -> -inf) the output must be x itself")


def gated_residual_parts(fn: _Modulate, extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[Part]:
    """``gated_residual`` is one formula: one part. ``extra``: the notebook's ``(x, cond)``."""
    return [_part("x + sigmoid(gate_logits) * correction", 1.0, lambda: _gated_residual_cases(fn, extra))]


def check_gated_residual(
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], *, own_work: bool = True
) -> bool:
    """Check ``fn(x, correction, gate_logits) = x + sigmoid(gate_logits) * correction``."""

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "gated_residual")
        summary = "sigmoid gate, x passes through, closed/open limits, matches the GatedResidual block (5 cases)"
        return gated_residual_parts(fn), summary

    return _run("gated_residual", body)


# ---------------------------------------------------------------------------------------------
# misalignment energy
# ---------------------------------------------------------------------------------------------


def _known_misalignment(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``high``, ``refined`` and the energy they must give, known by construction, plus wrong variants.

    ``high = refined + d`` where, at every cell, half of the channels differ by ``±a·sqrt(1 + t)``
    and the other half by ``±a·sqrt(1 - t)`` (random signs): the channel mean of ``d**2`` is ``a**2``.
    """
    channels, t = 6, 0.6
    refined = _randn(2, channels, 4, 6, seed=seed)
    amp = 0.5 + torch.rand(2, 1, 4, 6, generator=_gen(seed + 1))
    signs = torch.randint(0, 2, (2, channels, 4, 6), generator=_gen(seed + 2)).float() * 2 - 1
    spread = torch.tensor([(1 + t) ** 0.5] * (channels // 2) + [(1 - t) ** 0.5] * (channels // 2))
    high = refined + signs * spread.view(1, channels, 1, 1) * amp
    wrong = {
        "sum": channels * amp**2,
        "abs": amp * float(spread.mean()),
        "sqrt": amp,
    }
    return high, refined, amp**2, wrong


def check_misalignment(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, own_work: bool = True) -> bool:
    """Check ``fn(high, refined) -> (B, 1, h, w)`` mean squared difference over channels."""

    summary = "mean squared difference over channels, shape (B, 1, h, w) (3 cases)"

    def cases() -> None:
        high, refined, want, wrong = _known_misalignment(30)
        out = _call(fn, high, refined)
        if isinstance(out, torch.Tensor) and out.shape == (2, 4, 6):
            raise AssertionError("keep a channel axis of size 1: mean(dim=1, keepdim=True) gives (B, 1, h, w)")
        out = _tensor(out, "the energy", want.shape)
        if not _close(out, want):
            if _close(out, wrong["sum"]):
                raise AssertionError("average over channels (mean), not sum: levels differ in channel count")
            if _close(out, wrong["abs"]):
                raise AssertionError("square the difference: energy = mean over channels of (high - refined)**2")
            if _close(out, wrong["sqrt"]):
                raise AssertionError("no square root: the energy is the mean squared difference")
            raise AssertionError(f"expected mean over channels of (high - refined)**2 ({_maxerr(out, want)})")
        same = _tensor(_call(fn, high, high), "the energy", want.shape)
        if not _close(same, torch.zeros_like(want)):
            raise AssertionError("identical features are perfectly aligned: the energy must be 0")
        shifted = _tensor(_call(fn, high, high + 2.0), "the energy", want.shape)
        if not _close(shifted, torch.full_like(want, 4.0)):
            raise AssertionError("a uniform offset of 2 in every channel must give an energy of 4 everywhere")

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "misalignment")
        return [_part("mean squared difference over channels", 1.0, cases)], summary

    return _run("misalignment", body)
