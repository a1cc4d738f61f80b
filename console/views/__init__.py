"""Presenters: FleetState → cells and text for the screens. Pure (no Textual, no I/O, no clock).

The rendering rule is decided here, once:

| data                                   | cell                                             |
|----------------------------------------|--------------------------------------------------|
| live value                             | the number, tone "live" (threshold tones on top) |
| live zero                              | "0", tone "zero"                                 |
| live null, unsupported (TGI KV gauge)  | "n/a", tone "unsupported"                        |
| live null, nothing in the window       | "—", tone "missing"                              |
| stats not live / host stale or down    | the last value, tone "stale", never a health tone; the age is in the state cell |
| scrape failed (running engine, no stats) | "ERR", tone "error"                            |
| engine makes no progress (hung, wedged)  | its windowed TTFT and non-zero token rate: tone "stale"; state "hung (values stale)" |
| host not live                          | host and engines say one age: "unreachable (11s ago)", "ready (11s ago)" |
| engine not running                     | "—", tone "missing"                              |

Simulated engines and GPUs say SIMULATED; engines the agent watches but did not start say "watched".
Durations follow the one rule (agents.schema.units: "164ms", "1.24s", "38s", "3m12s"); an engine with an
active CRASH_LOOP reads "crash-loop" (``engine_state``); the alerts cell names the root cause of the worst
fault ("KV_PRESSURE +3", console.views.rootcause).

Modules by concern: ``cells`` (formatters, one value's cell), ``rows`` (a host's and an engine's fleet
row), ``filters`` (the filter grammar), ``table`` (the fleet table, its sort and the header counts),
``detail`` (engine detail, a watched engine, the agent's action refusals, the fleet status line),
``alerts`` (the alerts table and evidence), ``rootcause`` (an engine's alerts grouped by fault, the cause
leading). Every public name is re-exported here.
"""

from __future__ import annotations

from console.views.alerts import AlertEntry, alert_detail, alert_entries, alert_rows, alert_time, entry_cells
from console.views.cells import (
    EngineView,
    GiB,
    age_text,
    alerts_cell,
    data_age,
    engine_state,
    engine_view,
    gib,
    gpu_source_cell,
    host_state_cell,
    metric_cell,
    model_name,
    quantile_text,
    rate_text,
    seconds_text,
    wall_clock,
)
from console.views.detail import (
    action_refusal,
    engine_summary,
    event_lines,
    gpu_process_lines,
    gpu_summary,
    graph_note,
    host_status_line,
    live_engine_fields,
    refused_actions,
    watch_lines,
)
from console.views.filters import ANY_ALERT, FILTER_FIELDS, Term, matches, parse_filter
from console.views.rootcause import AlertGroup, group_alerts, root_causes
from console.views.rows import (
    COLUMN_PRIORITY,
    FLEET_COLUMNS,
    RIGHT_COLUMNS,
    RowInputs,
    engine_gpus,
    engine_row,
    host_row,
)
from console.views.table import (
    DESCENDING,
    SORTABLE,
    FleetTable,
    engine_key,
    fleet_table,
    header_counts,
    split_key,
)

__all__ = [
    "ANY_ALERT",
    "COLUMN_PRIORITY",
    "DESCENDING",
    "FILTER_FIELDS",
    "FLEET_COLUMNS",
    "RIGHT_COLUMNS",
    "SORTABLE",
    "AlertEntry",
    "AlertGroup",
    "EngineView",
    "FleetTable",
    "GiB",
    "RowInputs",
    "Term",
    "action_refusal",
    "age_text",
    "alert_detail",
    "alert_entries",
    "alert_rows",
    "alert_time",
    "alerts_cell",
    "data_age",
    "engine_gpus",
    "engine_key",
    "engine_row",
    "engine_state",
    "engine_summary",
    "engine_view",
    "entry_cells",
    "event_lines",
    "fleet_table",
    "gib",
    "gpu_process_lines",
    "gpu_source_cell",
    "gpu_summary",
    "graph_note",
    "group_alerts",
    "header_counts",
    "host_row",
    "host_state_cell",
    "host_status_line",
    "live_engine_fields",
    "matches",
    "metric_cell",
    "model_name",
    "parse_filter",
    "quantile_text",
    "rate_text",
    "refused_actions",
    "root_causes",
    "seconds_text",
    "split_key",
    "wall_clock",
    "watch_lines",
]
