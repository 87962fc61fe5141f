"""device=auto/cpu/cuda/mps: resolution, clear errors without the hardware, checkpoints stored on the CPU."""

from __future__ import annotations

import pytest
import torch

from hlgfa_lite.errors import ConfigError
from hlgfa_lite.run.device import resolve_device


def test_auto_is_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cpu_always_resolves() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=f"device={name!r}.*device=auto or device=cpu"):
        resolve_device(name)


def test_checkpoint_tensors_are_stored_on_the_cpu(tmp_path, untrained_run) -> None:
    payload = torch.load(untrained_run / "checkpoint.pt", map_location="meta", weights_only=True)
    assert payload["scoring_config"]["scoring"] == "memory"  # the concrete scoring config, stored whole
    assert all(v.device.type == "meta" for v in payload["state_dict"].values())  # loadable anywhere
    real = torch.load(untrained_run / "checkpoint.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in real["state_dict"].values())


def test_threads_env_and_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    from hlgfa_lite.run import threads

    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("HLGFA_THREADS", "1")
        assert threads.apply_threads(0) == 1
        monkeypatch.delenv("HLGFA_THREADS")
        threads.auto_threads.cache_clear()
        monkeypatch.setattr(threads, "busy_cores", lambda: None)  # no /proc/stat: the load average decides
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.6, 0.0, 0.0))
        monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
        assert threads.apply_threads(0) == 1  # another process is busy on one of two cores
        threads.auto_threads.cache_clear()
        monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.1, 0.0, 0.0))
        assert threads.auto_threads() == 2
    finally:
        threads.auto_threads.cache_clear()
        torch.set_num_threads(before)


def test_idle_cores_are_measured_now_not_by_the_lagging_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started right after another finished gets every idle core although the 1-minute load
    average still counts the finished run."""
    from hlgfa_lite.run import threads

    samples = iter([(1000, 500), (1200, 700)])  # all 200 jiffies of the window idle
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.0, 1.0, 0.5))  # the previous run, still counted
    threads.auto_threads.cache_clear()
    try:
        assert threads.busy_cores() == 0.0
        samples = iter([(1000, 500), (1200, 600)])  # half the window busy: one of two cores
        assert threads.busy_cores() == pytest.approx(1.0)
        samples = iter([(1000, 500), (1200, 700)])
        assert threads.auto_threads() == 2
    finally:
        threads.auto_threads.cache_clear()


def test_a_busy_core_is_seen_and_its_end_at_once() -> None:
    """Real /proc/stat: a process spinning on one core counts as one busy core; once it ends, none."""
    import os
    import subprocess
    import sys

    from hlgfa_lite.run import threads

    if not os.path.exists("/proc/stat") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs Linux /proc/stat and two cores")
    if (threads.busy_cores() or 0.0) > 0.3:
        pytest.skip("the machine is busy with other work; this measurement needs it idle")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        threads.time.sleep(0.3)
        assert 0.6 < threads.busy_cores() < 1.5
    finally:
        spinner.kill()
        spinner.wait()
    assert threads.busy_cores() < 0.4


def test_keep_freed_memory_respects_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's thresholds are raised once per process, unless turned off or set by the user."""
    import sys

    from hlgfa_lite.run import allocator

    for name in (*allocator.YOURS, "HLGFA_KEEP_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    for env in ({"HLGFA_KEEP_MEMORY": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}, {"GLIBC_TUNABLES": "x=1"}):
        allocator.keep_freed_memory.cache_clear()
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert allocator.keep_freed_memory() is False, env
    allocator.keep_freed_memory.cache_clear()
    calls = []
    monkeypatch.setattr(
        allocator.ctypes, "CDLL", lambda name: type("C", (), {"mallopt": lambda s, p, v: calls.append((p, v)) or 1})()
    )
    assert allocator.keep_freed_memory() is sys.platform.startswith("linux")
    if sys.platform.startswith("linux"):
        assert calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 1 << 30)]
    allocator.keep_freed_memory.cache_clear()


def test_keep_freed_memory_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from hlgfa_lite.run import allocator

    def no_libc(name: str):
        raise OSError(f"{name}: cannot open shared object file")

    for name in (*allocator.YOURS, "HLGFA_KEEP_MEMORY"):
        monkeypatch.delenv(name, raising=False)
    allocator.keep_freed_memory.cache_clear()
    monkeypatch.setattr(allocator.ctypes, "CDLL", no_libc)
    assert allocator.keep_freed_memory() is False
    allocator.keep_freed_memory.cache_clear()
