"""Every bad input of the corpus (cases.py): exit status 2, one ``tagseg: error:`` line naming the file or
key, no traceback, and no output left that looks complete. (A bad scan given to ``tagseg predict`` is one
``tagseg: failed:`` line and a row of failed.csv: in a folder the batch goes on without it.)"""

from __future__ import annotations

import re

import pytest

from reliability.cases import CASES, TINY_TRAIN, Case

pytestmark = pytest.mark.usefixtures("single_thread")


def _params():
    for case in CASES:
        yield pytest.param(case, id=case.id)


def readable(argv: list[str], bad, tmp) -> list[str]:
    """argv for the case table: folders as <bad> / <out>, the tiny-training overrides as one ``...``."""
    out, skipped = [], False
    for arg in argv:
        if arg in TINY_TRAIN:
            if not skipped:
                out.append("...")
            skipped = True
            continue
        out.append(
            arg.replace(str(bad.ckpts["good"]), "<run>/best.ckpt")
            .replace(str(bad.root), "<bad>")
            .replace(str(tmp), "<out>")
        )
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input_is_one_line_and_exit_2(case: Case, bad, run_tagseg, tmp_path, case_table):
    argv = case.argv(bad, tmp_path)
    result = run_tagseg(argv)
    errors = [line for line in result.err.splitlines() if line.startswith(case.prefix)]
    message = errors[0][len(case.prefix) :] if errors else ""
    case_table.append(
        (
            case,
            readable(argv, bad, tmp_path),
            f"{case.status}: {readable([message], bad, tmp_path)[0]}" if errors else f"(exit {result.status})",
        )
    )
    assert "Traceback" not in result.err, result.err[-3000:]
    assert result.status == case.status, f"exit {result.status}\n{result.err[-2000:]}"
    assert len(errors) == 1, result.err[-2000:]
    assert re.search(case.message, message), errors[0]
    # shown once: not also as a logged ERROR line (stdout or stderr)
    assert (result.out + result.err).count(message) == 1, result.out[-2000:] + result.err[-2000:]
    left = [p for pattern in case.forbidden for p in tmp_path.glob(pattern)]
    assert not left, f"outputs left behind: {left}"
    assert not list(tmp_path.rglob("*.partial*")), "temporary files left behind"
