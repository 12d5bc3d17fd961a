"""The restart policy and the group plan are pure: tested without processes."""

from __future__ import annotations

import pytest

from djap.groups import check_names, plan_groups
from djap.health import (
    Action,
    Limits,
    Sample,
    backoff_delay,
    decide,
    next_crash_streak,
    parse_size,
)

LIMITS = Limits(hung_after=30, max_memory=512 << 20, startup_timeout=60)


def test_a_healthy_process_is_kept():
    sample = Sample(pid=1, rss=100 << 20, uptime=100, heartbeat_age=2)
    assert decide(sample, LIMITS).action is Action.KEEP


def test_an_exited_or_zombie_process_is_restarted_as_a_crash():
    killed = decide(Sample(pid=1, exit_code=-9), LIMITS)
    assert killed.action is Action.RESTART and killed.crash and "SIGKILL" in killed.reason
    assert "code 3" in decide(Sample(pid=1, exit_code=3), LIMITS).reason
    assert decide(Sample(pid=1, zombie=True), LIMITS).action is Action.RESTART


def test_a_stale_heartbeat_means_hung_and_is_killed():
    decision = decide(Sample(pid=1, uptime=100, heartbeat_age=31), LIMITS)
    assert decision.action is Action.KILL and "hung" in decision.reason


def test_startup_gets_time_before_the_first_heartbeat():
    assert decide(Sample(pid=1, uptime=59, heartbeat_age=None), LIMITS).action is Action.KEEP
    assert decide(Sample(pid=1, uptime=61, heartbeat_age=None), LIMITS).action is Action.KILL


def test_over_max_memory_is_recycled_once_not_while_draining():
    big = Sample(pid=1, rss=600 << 20, uptime=10, heartbeat_age=1)
    decision = decide(big, LIMITS)
    assert decision.action is Action.RECYCLE and not decision.crash
    assert "600M" in decision.reason and "512M" in decision.reason
    draining = Sample(pid=1, rss=600 << 20, uptime=10, heartbeat_age=1, draining=True)
    assert decide(draining, LIMITS).action is Action.KEEP
    unlimited = Limits(hung_after=30)
    assert decide(big, unlimited).action is Action.KEEP


def test_backoff_doubles_from_one_second_to_a_minute_and_resets_after_a_minute_up():
    streak, delays = 0, []
    for _ in range(9):
        streak = next_crash_streak(streak, uptime=0.5, crash=True)
        delays.append(backoff_delay(streak))
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert next_crash_streak(streak, uptime=61, crash=True) == 1
    assert backoff_delay(0) == 0


def test_parse_size():
    assert parse_size("512MB") == 512 << 20
    assert parse_size("1.5G") == int(1.5 * (1 << 30))
    assert parse_size("2048") == 2048
    with pytest.raises(ValueError, match="512MB"):
        parse_size("lots")


def test_plan_groups_excludes_dedicated_names_from_the_general_group():
    groups = plan_groups(4, "1:GpuJob", ["2:A,B"], ["Slow"])
    general, gpu, pool = groups
    assert (general.procs, general.include, general.exclude) == (
        4,
        None,
        ["Slow", "GpuJob", "A", "B"],
    )
    assert (gpu.procs, gpu.include, gpu.gpu) == (1, ["GpuJob"], True)
    assert (pool.name, pool.procs, pool.include, pool.gpu) == ("pool1", 2, ["A", "B"], False)


@pytest.mark.parametrize(
    ("gpu", "pools", "message"),
    [
        ("GpuJob", [], "N:JobName"),
        ("x:GpuJob", [], "N:JobName"),
        ("0:GpuJob", [], "at least 1"),
        ("1:", [], "N:JobName"),
        ("1:A", ["1:A"], "both"),
    ],
)
def test_plan_groups_rejects_bad_specs_with_the_flag_named(gpu, pools, message):
    with pytest.raises(ValueError, match=message):
        plan_groups(1, gpu, pools)


def test_check_names_suggests_the_registered_name():
    with pytest.raises(ValueError, match="did you mean 'GpuJob'"):
        check_names(plan_groups(1, "1:GpuJbo"), ["GpuJob", "Other"])
    check_names(plan_groups(1, "1:GpuJob"), ["GpuJob"])
