"""Driving the ``hlgfa-lite`` command in-process, for the CLI tests."""

from __future__ import annotations

import contextlib
import io

from hlgfa_lite.run.cli import main


def run_cli(argv: list[object]) -> tuple[int, str, str]:
    """main(argv) in-process: (exit code, stdout, stderr); argparse exits count as exit codes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def assert_one_line_error(result: tuple[int, str, str], *names: str) -> str:
    """Exit code 2 and one ``error: ...`` line on stderr naming each of ``names``; no traceback."""
    rc, out, err = result
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in out + err
    assert "\r" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]
