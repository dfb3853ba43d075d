#!/usr/bin/env bash
# Validates the monitoring files in deploy/:
#   - deploy/prometheus/alerts.yml with `promtool check rules` (skipped, with a
#     note, when promtool is not installed; set FLIT_REQUIRE_PROMTOOL=1 to make
#     that an error, as CI should);
#   - deploy/grafana/flit.json: valid JSON, schemaVersion 39, unique panel ids,
#     panels inside the 24-column grid and not overlapping;
#   - the dashboard's PromQL: parsed by promtool too (its queries, with Grafana
#     variables filled in, wrapped as recording rules), when promtool is there;
#   - both files: every metric they name is one the router exports (list below).
# Usage, from the repository root: deploy/check.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rules=deploy/prometheus/alerts.yml
dashboard=deploy/grafana/flit.json

if command -v promtool >/dev/null 2>&1; then
    echo "== promtool check rules $rules ($(promtool --version 2>&1 | head -n 1))"
    promtool check rules "$rules"
elif [[ "${FLIT_REQUIRE_PROMTOOL:-0}" == 1 ]]; then
    echo "error: promtool not found and FLIT_REQUIRE_PROMTOOL=1 (Debian/Ubuntu: apt-get install prometheus)" >&2
    exit 1
else
    echo "== promtool check rules: SKIPPED, promtool is not installed (Debian/Ubuntu: apt-get install prometheus);"
    echo "   the rule file gets only the metric-name check below"
fi

echo "== dashboard and metric names"
python3 - "$rules" "$dashboard" <<'PY'
import json
import re
import sys

rules_path, dashboard_path = sys.argv[1], sys.argv[2]

# Every metric the router exposes at /metrics. tests/deploy_files.rs checks
# this list against a live router's /metrics, so it cannot drift from the code.
GAUGES = [
    "flit_shard_up", "flit_draining", "flit_shard_connections", "flit_shard_connections_max",
    "flit_shard_subscriptions", "flit_shard_pending_bytes", "flit_build_info", "flit_shard_accepting",
    "flit_stream_messages", "flit_stream_bytes", "flit_stream_first_sequence", "flit_stream_last_sequence",
    "flit_stream_consumers", "flit_stream_storage_failed",
    "flit_consumer_lag", "flit_consumer_ack_pending", "flit_consumer_stalled",
    "flit_data_filesystem_size_bytes", "flit_data_filesystem_available_bytes", "flit_routes_up",
    "flit_route_node_up", "flit_route_node_routes_up", "flit_route_node_round_trip_seconds",
    "flit_route_node_queued_bytes",
]
COUNTERS = [
    "flit_shard_connections_accepted_total", "flit_shard_connections_refused_total",
    "flit_shard_connections_closed_total", "flit_shard_messages_in_total", "flit_shard_bytes_in_total",
    "flit_shard_deliveries_total", "flit_shard_bytes_out_total", "flit_shard_mesh_messages_sent_total",
    "flit_shard_mesh_messages_received_total", "flit_shard_mesh_queue_full_total",
    "flit_shard_slow_consumer_evictions_total", "flit_shard_no_responders_total",
    "flit_shard_queue_group_misses_total", "flit_shard_accept_errors_total",
    "flit_shard_mesh_messages_to_dead_shards_total", "flit_shard_busy_seconds_total",
    "flit_shard_idle_seconds_total", "flit_shard_errors_total", "flit_shard_protocol_errors_total",
    "flit_shard_rate_limit_rejections_total", "flit_shard_rate_limit_pauses_total", "flit_shard_tls_failures_total",
    "flit_stream_appends_total", "flit_stream_refused_total", "flit_stream_commits_total",
    "flit_consumer_redeliveries_total", "flit_consumer_dead_letters_total",
    "flit_route_messages_sent_total", "flit_route_messages_received_total", "flit_route_messages_dropped_total",
    "flit_route_authentication_failures_total",
    "flit_route_node_messages_sent_total", "flit_route_node_messages_received_total",
    "flit_route_node_messages_dropped_total", "flit_route_node_bytes_sent_total", "flit_route_node_bytes_received_total",
]
HISTOGRAMS = ["flit_in_router_latency_seconds", "flit_stream_sync_latency_seconds"]
# Series Prometheus itself adds for every scrape target.
BUILTIN = ["up"]

KNOWN = set(GAUGES) | set(COUNTERS) | set(BUILTIN)
for h in HISTOGRAMS:
    KNOWN |= {h + "_bucket", h + "_sum", h + "_count"}

# In prose and legends a histogram may be named by its base name.
MENTIONABLE = KNOWN | set(HISTOGRAMS)

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2"}
failures = []


def metric_names(expr):
    """The metric names a PromQL expression selects (functions, keywords, labels removed)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)  # Grafana variable query
    if m:
        expr = m.group(1)
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def check_names(where, expr):
    names = metric_names(expr)
    if not names:
        failures.append(f"{where}: no metric found in expression: {expr.strip()}")
    for name in sorted(names - KNOWN):
        failures.append(f"{where}: unknown metric {name!r} in: {' '.join(expr.split())}")


def check_mentions(path, text):
    # Any flit_* word, also in descriptions and legends, must be a real metric.
    for m in re.finditer(r"(?<![\w])flit_[a-z0-9_]+", text):
        if m.group(0) not in MENTIONABLE:
            line = text.count("\n", 0, m.start()) + 1
            failures.append(f"{path}:{line}: unknown metric name {m.group(0)!r}")


# ---- alerts.yml: pull every `expr:` (inline or block scalar) out line by line.
rules_text = open(rules_path).read()
check_mentions(rules_path, rules_text)
lines = rules_text.splitlines()
alerts = 0
i = 0
while i < len(lines):
    line = lines[i]
    m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", line)
    if m:
        indent, rest = len(m.group(1)), m.group(2).strip()
        start = i + 1
        if rest[:1] in ("|", ">"):
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                body.append(lines[i])
                i += 1
            expr = "\n".join(body)
        else:
            expr = rest.strip("'\"")
            i += 1
        check_names(f"{rules_path}:{start}", expr)
        alerts += 1
        continue
    i += 1
if alerts == 0:
    failures.append(f"{rules_path}: no expr found")

try:
    import yaml  # optional: structural checks when PyYAML is there
except ImportError:
    yaml = None
if yaml is not None:
    doc = yaml.safe_load(rules_text)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            if "alert" not in rule:
                continue
            sev = rule.get("labels", {}).get("severity")
            if sev not in ("page", "ticket"):
                failures.append(f"{rules_path}: {name}: severity must be page or ticket, not {sev!r}")
            ann = rule.get("annotations", {})
            for key in ("summary", "description"):
                if not ann.get(key):
                    failures.append(f"{rules_path}: {name}: missing annotation {key}")
            if "docs/OPERATIONS.md" not in ann.get("description", ""):
                failures.append(f"{rules_path}: {name}: description does not point to docs/OPERATIONS.md")

# ---- flit.json
dashboard_text = open(dashboard_path).read()
try:
    dash = json.loads(dashboard_text)
except ValueError as e:
    print(f"{dashboard_path}: invalid JSON: {e}")
    sys.exit(1)
check_mentions(dashboard_path, dashboard_text)
if dash.get("schemaVersion") != 39:
    failures.append(f"{dashboard_path}: schemaVersion is {dash.get('schemaVersion')!r}, expected 39")
variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
if "instance" not in variables:
    failures.append(f"{dashboard_path}: no `instance` template variable")

panels = []
for p in dash.get("panels", []):
    panels.append(p)
    panels.extend(p.get("panels", []))  # panels inside collapsed rows
seen = {}
cells = {}
queries = 0
for p in panels:
    pid, title = p.get("id"), p.get("title", "?")
    if pid in seen:
        failures.append(f"{dashboard_path}: panel id {pid} used by {seen[pid]!r} and {title!r}")
    seen[pid] = title
    g = p.get("gridPos", {})
    x, y, w, h = (g.get(k) for k in ("x", "y", "w", "h"))
    if None in (x, y, w, h) or x < 0 or w < 1 or h < 1 or x + w > 24:
        failures.append(f"{dashboard_path}: panel {title!r}: bad gridPos {g}")
        continue
    for cx in range(x, x + w):
        for cy in range(y, y + h):
            if (cx, cy) in cells:
                failures.append(f"{dashboard_path}: panels {cells[(cx, cy)]!r} and {title!r} overlap")
                break
            cells[(cx, cy)] = title
        else:
            continue
        break
    for t in p.get("targets", []):
        queries += 1
        check_names(f"{dashboard_path}: panel {title!r} {t.get('refId', '')}", t.get("expr", ""))
for v in dash.get("templating", {}).get("list", []):
    if v.get("type") == "query":
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        check_names(f"{dashboard_path}: variable {v.get('name')}", q)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"{rules_path}: {alerts} expressions, all metric names known")
print(f"{dashboard_path}: valid JSON, {len(panels)} panels (unique ids, no overlap), {queries} queries, all metric names known")
PY
if command -v promtool >/dev/null 2>&1; then
    echo "== promtool: dashboard queries parse"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$dashboard" >"$tmp/dashboard_queries.yml" <<'PY'
import json
import sys

dash = json.load(open(sys.argv[1]))
fill = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$instance": ".*", "$shard": ".*"}
panels = []
for p in dash.get("panels", []):
    panels.append(p)
    panels.extend(p.get("panels", []))
print("groups:\n  - name: dashboard_queries\n    rules:")
n = 0
for p in panels:
    for t in p.get("targets", []):
        expr = t.get("expr", "")
        for k in sorted(fill, key=len, reverse=True):
            expr = expr.replace(k, fill[k])
        n += 1
        print(f"      - record: dashboard_query_{n}\n        expr: {json.dumps(expr)}")
PY
    promtool check rules "$tmp/dashboard_queries.yml"
fi
echo "== deploy/check.sh: OK"
