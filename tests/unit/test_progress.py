"""keyparity.progress: what a command that reads many keys says on standard error."""
from __future__ import annotations

import io

from keyparity.progress import EVERY, FEW, Progress


def read(total: int | None, n: int, tty: bool) -> str:
    out = io.StringIO()
    progress = Progress("read keys on hsm1", total, stream=out, tty=tty)
    for _ in range(n):
        progress.tick()
    progress.done()
    return out.getvalue()


def test_a_few_keys_say_nothing():
    assert read(FEW, FEW, tty=False) == read(FEW, FEW, tty=True) == ""
    assert read(None, FEW, tty=False) == ""


def test_without_a_terminal_one_line_per_every_keys_and_the_count_at_the_end():
    lines = read(2 * EVERY + 50, 2 * EVERY + 50, tty=False).splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"keyparity: read keys on hsm1: {n} of {2 * EVERY + 50}"
        for n in (EVERY, 2 * EVERY, 2 * EVERY + 50)]
    assert read(EVERY, EVERY, tty=False).count("\n") == 1  # the last line is not said twice


def test_an_unknown_total_counts_what_was_read():
    assert read(None, FEW + 1, tty=False).startswith(
        f"keyparity: read keys on hsm1: {FEW + 1} (")


def test_on_a_terminal_a_bar_redrawn_in_place_then_a_newline():
    text = read(40, 40, tty=True)
    assert text.count("\r") == 41 and text.endswith("\n") and text.count("\n") == 1
    assert "\r[" + "#" * 30 + "] keyparity: read keys on hsm1: 40 of 40" in text
