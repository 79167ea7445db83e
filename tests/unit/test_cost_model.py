"""The cost model's arithmetic (bench/cost.py) against cases worked out by hand, and the
deployment figures it reads from the Bicep. No timing, no Azure: pure functions."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench import cost
from bench.cost import Deployment, Prices, Workload

PRICES = Prices()
DEP = Deployment(instance_memory_mb=2048)


def test_a_short_execution_is_billed_the_minimum_period() -> None:
    assert cost.padded_seconds(0.12, PRICES) == 1.0
    assert cost.padded_seconds(0.0, PRICES) == 1.0
    # past the minimum, rounded up to the next 100 ms
    assert cost.padded_seconds(1.05, PRICES) == pytest.approx(1.1)
    assert cost.padded_seconds(2.0, PRICES) == pytest.approx(2.0)


def test_billed_share_is_the_chance_an_instance_is_busy() -> None:
    assert cost.billed_share(0.0, 0.2, PRICES) == 0.0
    # one execution a second, each padded to 1 s: 1 - e^-1 of the time
    assert cost.billed_share(1.0, 0.2, PRICES) == pytest.approx(1 - math.exp(-1))
    # sparse: 1 a minute, padded 1 s each -> about 1/60 of the time
    assert cost.billed_share(1 / 60, 0.2, PRICES) == pytest.approx(1 - math.exp(-1 / 60))


def test_stream_seconds_one_instance_and_cpu_bound() -> None:
    # 86,400 executions over 24 h = 1/s, 0.2 s each, CPU light: one instance, 63.2% busy
    got = cost.stream_seconds_per_day(86_400, 0.2, 0.001, 24, DEP, PRICES)
    assert got == pytest.approx(86_400 * (1 - math.exp(-1)))
    # 0.5 CPU-seconds each on a 0.25-core (512 MB) instance: two instances, each at 0.5/s
    small = replace(DEP, instance_memory_mb=512)
    got = cost.stream_seconds_per_day(86_400, 0.2, 0.5, 24, small, PRICES)
    assert got == pytest.approx(2 * 86_400 * (1 - math.exp(-0.5)))
    assert cost.stream_seconds_per_day(0, 0.2, 0.001, 24, DEP, PRICES) == 0.0


def test_reconcile_load_follows_the_slices_the_sweep_and_the_list_budget() -> None:
    # 4 recent hours + the current one every run, 48 + 1 once a day, 720 h / 168 runs of sweep,
    # 60 records a page, 40 requests / 20 s
    w = Workload()
    load = cost.ReconcileLoad.at(100_000 / 24, w)  # 4,167 start times an hour: 70 pages
    assert (load.per_slice, load.hourly_pass, load.deep_pass) == (70, 350, 3_430)
    assert load.sweep_piece == math.ceil(100_000 / 24 * 720 / 168 / 60) == 298
    assert load.per_hour(w) == pytest.approx((23 * 350 + 3_430) / 24 + 298)
    # 40 requests at once (the sliding window), then 2 a second
    assert load.run_seconds(w, deep=False) == pytest.approx((350 + 298 - 40) / 2)
    assert load.run_seconds(w, deep=True) == pytest.approx((3_430 + 298 - 40) / 2)
    idle = cost.ReconcileLoad.at(0, w)  # an empty hour is still one List request a slice
    assert (idle.hourly_pass, idle.sweep_piece, idle.run_seconds(w, deep=False)) == (5, 1, 1.0)
    # 23 runs of 5 slices, one of 49, 24 sweep pieces (30 h in 168 cross a UTC midnight)
    assert cost.ReconcileLoad.slices_per_day(w) == pytest.approx(23 * 5 + 49 + 24 * (1 + 30 / 168))
    per_day = 23 * cost.padded_seconds(304.0, PRICES) + cost.padded_seconds(1_844.0, PRICES)
    assert cost.reconcile_seconds_per_day(100_000, w, PRICES) == pytest.approx(per_day)


def test_capacity_by_tier_follows_the_lifecycle_rule() -> None:
    # 1e6 records of 10 kB a month = 10 GB per monthly cohort, month 12
    none = cost.archive_capacity_gb_months(1e6, 10_000, 12, DEP)
    assert none == pytest.approx({"hot": 120.0, "cool": 0.0, "archive": 0.0})
    tiered = replace(DEP, cool_after_days=30, archive_after_days=180)
    # cohort ages 15.2, 45.6, ..., 167.3 days (Cool from the second), 197.7.. (Archive)
    got = cost.archive_capacity_gb_months(1e6, 10_000, 12, tiered)
    assert got == pytest.approx({"hot": 10.0, "cool": 50.0, "archive": 60.0})


def test_at_rest_is_the_timers_and_the_scale_controller() -> None:
    w = Workload()
    e = cost.estimate(0, DEP, w, PRICES, months_kept=12, free_grants=False)
    days = 730 / 24
    # keep_subscription: 24 runs a day, 1 s billed each; reconcile: 23 runs of 6 List
    # requests (5 slices and the sweep piece), inside the 40 the window lets go at once: 1 s
    # billed each; one of 50 (the deep pass's 49 and the piece): 10 more at 2 a second, 5 s
    seconds = 24 * 1.0 + 23 * 1.0 + 5.0
    assert e.quantities["gb_seconds"] == pytest.approx(seconds * days * 2)
    assert e.costs["functions_execution_time"] == pytest.approx(seconds * days * 2 * 0.000026)
    # the two timers' 48 runs, and the reconcile slices each an execution of its own
    executions = 48 + cost.ReconcileLoad.slices_per_day(w)
    assert e.costs["functions_executions"] == pytest.approx(executions * days / 1e6 * 0.40)
    # no messages, so no host polling; the scale controller's checks remain
    assert e.costs["queue_operations"] == pytest.approx(8_640 * days / 1e4 * 0.004)
    assert e.records_per_month == 0
    # with the free grants, compute at rest costs nothing
    free = cost.estimate(0, DEP, w, PRICES)
    assert free.costs["functions_execution_time"] == 0.0
    assert free.costs["functions_executions"] == 0.0
    assert free.costs["log_ingestion"] == 0.0


def test_one_tenant_month_by_hand() -> None:
    w = Workload(
        archive_exec_s=0.2,
        webhook_exec_s=0.005,
        cpu_s_per_record=0.001,
        record_bytes=10_000,
        versions_per_call=1.0,
        requeues_per_record=0.0,
        log_bytes_per_execution=0.0,
    )
    days = 730 / 24
    e = cost.estimate(86_400, DEP, w, PRICES, months_kept=1, free_grants=False)
    busy = 86_400 * (1 - math.exp(-1))  # webhook and archive streams, each 1/s, padded 1 s
    reconcile = cost.reconcile_seconds_per_day(86_400, w, PRICES)
    keep = 24 * 1.0
    assert e.quantities["gb_seconds"] == pytest.approx((2 * busy + reconcile + keep) * days * 2)
    assert e.quantities["records"] == pytest.approx(86_400 * days)
    assert e.costs["blob_writes"] == pytest.approx(86_400 * days / 1e4 * 0.055)
    # one put + get + delete per record, 43,200 empty polls a day at 2 s, 8,640 checks
    assert e.quantities["queue_operations"] == pytest.approx((86_400 * 3 + 43_200 + 8_640) * days)
    # month 1: one cohort of 86,400 * days records of 10 kB, plus the package
    gb = 86_400 * days * 10_000 / 1e9 + w.package_mb / 1000
    assert e.costs["blob_capacity"] == pytest.approx(gb * 0.0208)
    assert e.costs["graph"] == 0.0


def test_always_ready_instances_bill_a_baseline() -> None:
    ready = replace(DEP, always_ready_instances=1)
    e = cost.estimate(0, ready, Workload(), PRICES)
    assert e.costs["functions_always_ready"] == pytest.approx(2 * 730 * 3600 * 0.000004)


def test_per_million_records_storage_per_month_kept() -> None:
    w = Workload(record_bytes=10_000)
    pm = cost.per_million_records(20_000, DEP, w, PRICES)
    assert pm["gb"] == pytest.approx(10.0)
    assert pm["kept_hot_month"] == pytest.approx(10 * 0.0208)
    assert pm["kept_cool_month"] == pytest.approx(10 * 0.0152)
    assert pm["processing"] > pm["functions"] > 0


def test_smaller_instances_cost_less_when_graph_waits_dominate() -> None:
    w = Workload()
    big = cost.estimate(20_000, DEP, w, PRICES, free_grants=False)
    small = cost.estimate(
        20_000, replace(DEP, instance_memory_mb=512), w, PRICES, free_grants=False
    )
    assert small.costs["functions_execution_time"] == pytest.approx(
        big.costs["functions_execution_time"] / 4
    )


def test_the_alternative_standing_resources_by_hand() -> None:
    standing = cost.Alternative().standing(PRICES)
    values = list(standing.values())
    assert values[0] == pytest.approx(2 * 2 * 0.11 * 730)  # ADX markup
    assert values[1] is None  # VMs: no price read
    assert values[2] == pytest.approx(1.0 * 0.012 * 730)  # 100 RU/s autoscale floor
    assert values[3] == pytest.approx(0.015 * 730)  # Event Hubs Basic, 1 TU
    assert cost.Alternative().standing_total(PRICES) == pytest.approx(321.2 + 8.76 + 10.95)


def test_deployment_is_read_from_the_bicep() -> None:
    dep = cost.read_deployment()
    assert dep.instance_memory_mb in cost.CORES_PER_INSTANCE
    assert dep.always_ready_instances == 1  # one for the HTTP functions by default
    assert dep.storage_sku == "Standard_LRS"
    assert dep.key_vault_sku == "standard"
    assert dep.max_polling_interval_s > 0
    assert dep.per_instance_concurrency > 0


def test_every_price_names_its_source() -> None:
    assert set(cost.PRICE_SOURCES) == set(vars(PRICES))


def test_tier_break_even_by_hand() -> None:
    # 10 kB: Cool saves (0.0208 - 0.0152) $/GB-month = 5.6e-8 a month; the move costs 1e-5
    assert cost.tier_break_even_months(10_000, "cool", PRICES) == pytest.approx(
        (0.10 / 1e4) / (10_000 / 1e9 * (0.0208 - 0.0152))
    )
    assert cost.tier_break_even_months(10_000, "archive", PRICES) == pytest.approx(
        (0.11 / 1e4) / (10_000 / 1e9 * (0.0208 - 0.002))
    )
