"""keyparity.bench.latency's pure parts: the worker counts asked for, the waits no -n shortens,
whose a py-spy stack is, the goals (the bench itself: tests/tools/test_bench_latency.py)."""
from __future__ import annotations

import pytest

from keyparity.bench.latency import by_workers, goals, role, waits, workers_list


def test_workers_list_needs_serial_among_counts_of_at_least_one():
    assert workers_list("8,1,4,2,4") == (1, 2, 4, 8)
    for bad in ("", "2,4", "0,1", "1,x"):
        with pytest.raises(ValueError, match="1 \\(serial\\) among them"):
            workers_list(bad)


def test_waits_are_the_controllers_calls_plus_the_busiest_workers():
    calls = {"total": 600, "by_process": {"90": 100, "91": 300, "95": 200}}
    w = waits(calls, 1000, 2.0, 1.0, 2, controller_pid=90)
    assert w == {"controller_calls": 100, "busiest_process_calls": 300,
                 "latency_path_seconds": pytest.approx(0.4), "cpu_busy": 0.25}
    serial = waits({"total": 50, "by_process": {"7": 50}}, 2000, 1.0, 0.5, 2, controller_pid=7)
    assert (serial["controller_calls"], serial["busiest_process_calls"]) == (0, 50)
    assert serial["latency_path_seconds"] == pytest.approx(0.1)


def test_a_stack_is_told_a_worker_the_controller_or_a_pipe_reader():
    head = 'process 1:"python -m pytest suites";<module> (runpy:1);'
    assert role(head + "main (_pytest/config/__init__.py:1);finalize (b.py:2)") == "controller"
    assert role(head + "serve (execnet/gateway_base.py:1);<module> (xdist/remote.py:4)") == \
        "worker"
    assert role(head + "Reply.run (execnet/gateway_base.py:3);_thread_receiver (e.py:5)") == \
        "pipe reader"


def test_goals_are_met_or_not_as_measured():
    runs = [{"workers": w, "seconds": s, "controller_share": c, "calls_per_key": 100.0}
            for w, s, c in ((1, 100.0, 0.99), (4, 30.0, 0.2), (8, 25.0, 0.3))]
    table = by_workers(runs)
    assert table[4]["speedup"] == pytest.approx(100 / 30)
    got = {g["goal"]: g["met"] for g in goals(1.0, table)}
    assert got == {"-n 4 >= 3x serial": True, "-n 8 >= 5x serial": False,
                   "-n 4: controller < 25% of the run's CPU": True,
                   "-n 8: controller < 25% of the run's CPU": False}
    assert all(g["at_goal_latency"] is False for g in goals(2.0, table))
