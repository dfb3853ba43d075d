#!/usr/bin/env bash
# Validates the monitoring files in deploy/:
#   - deploy/prometheus/alerts.yml with `promtool check rules` (skipped, with a
#     note, when promtool is not installed; set FLIT_REQUIRE_PROMTOOL=1 to make
#     that an error, as CI should);
#   - deploy/grafana/flit.json: valid JSON, schemaVersion 39, unique panel ids,
#     panels inside the 24-column grid and not overlapping;
#   - the dashboard's PromQL: parsed by promtool too (its queries, with Grafana
#     variables filled in, wrapped as recording rules), when promtool is there;
#   - both files: every metric they name is one the router exports (list below);
#   - deploy/kubernetes/*.yaml: YAML that parses, and with kubernetes-validate
#     (pip) the Kubernetes schemas (skipped, with a note, when it is not
#     installed; FLIT_REQUIRE_KUBERNETES_VALIDATE=1 makes that an error, as CI
#     should); ports, names and numbers consistent between the Services, the
#     StatefulSet, flit's arguments and deploy/container/Containerfile;
#   - the pod command's shell: run with fake pod names, addresses and a fake
#     `getent`, it derives the node id from the ordinal and passes only the
#     seeds that resolve.
# (tests/deploy_files.rs checks that every flit flag these files use exists.)
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

echo "== kubernetes manifests and container file"
if command -v kubernetes-validate >/dev/null 2>&1; then
    kubernetes-validate --strict --quiet deploy/kubernetes/statefulset.yaml deploy/kubernetes/services.yaml \
        deploy/kubernetes/secret.example.yaml
    echo "kubernetes-validate --strict: the manifests match the Kubernetes schemas ($(kubernetes-validate --version))"
elif [[ "${FLIT_REQUIRE_KUBERNETES_VALIDATE:-0}" == 1 ]]; then
    echo "error: kubernetes-validate not found and FLIT_REQUIRE_KUBERNETES_VALIDATE=1 (pip install kubernetes-validate)" >&2
    exit 1
else
    echo "kubernetes-validate: SKIPPED, not installed (pip install kubernetes-validate); the checks below still run"
fi
python3 - <<'PY'
import os
import re
import subprocess
import sys
import tempfile
import time

try:
    import yaml  # PyYAML: .ci/run installs it with kubernetes-validate
except ImportError:
    sys.exit("error: the Kubernetes checks need PyYAML (pip install pyyaml)")

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


k8s = "deploy/kubernetes"
(statefulset,) = load(f"{k8s}/statefulset.yaml")
services = {s["metadata"]["name"]: s for s in load(f"{k8s}/services.yaml")}
(secret,) = load(f"{k8s}/secret.example.yaml")
(kustomization,) = load(f"{k8s}/kustomization.yaml")
check(statefulset["kind"] == "StatefulSet", "statefulset.yaml: not a StatefulSet")
check(set(kustomization["resources"]) == {"services.yaml", "statefulset.yaml"},
      f"kustomization.yaml: resources {kustomization['resources']}")

spec = statefulset["spec"]
pod = spec["template"]["spec"]
(container,) = pod["containers"]
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
env = {e["name"]: e.get("value") for e in container["env"]}
script = container["command"][2]
check(container["command"][:2] == ["/bin/sh", "-c"], "the container command is not /bin/sh -c SCRIPT")
check(ports == {"client": 4224, "nats": 4222, "routes": 7422, "metrics": 8222}, f"container ports {ports}")

# The headless Service is the StatefulSet's, and resolves pods before they are ready.
routes = services.get(spec["serviceName"])
check(routes is not None, f"serviceName {spec['serviceName']} is not in services.yaml")
if routes:
    check(routes["spec"].get("clusterIP") == "None", "the routes Service is not headless")
    check(routes["spec"].get("publishNotReadyAddresses") is True, "the routes Service lacks publishNotReadyAddresses")
    check(env.get("FLIT_ROUTES_SERVICE") == spec["serviceName"], "FLIT_ROUTES_SERVICE is not the serviceName")
labels = spec["template"]["metadata"]["labels"]
check(spec["selector"]["matchLabels"].items() <= labels.items(), "the selector does not match the pod labels")
for name, service in services.items():
    check(service["spec"]["selector"].items() <= labels.items(), f"Service {name} does not select the pods")
    for p in service["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        number = ports.get(target, target)
        check(number in ports.values(), f"Service {name} port {p['name']}: target {target} is no container port")
        check(p["port"] == number, f"Service {name} port {p['name']}: {p['port']} is not the container's {number}")
check({p["name"] for p in services["flit"]["spec"]["ports"]} == {"client", "nats"}, "client Service ports")

# flit's own addresses in the pod command are the container ports.
def flag_port(flag):
    m = re.search(rf"{flag} \S*?(\d+)\"?\)?\"?(?:\s|$)", script)
    return int(m.group(1)) if m else None
for flag, port in [("--listen", "client"), ("--metrics", "metrics"), ("--cluster-listen", "routes")]:
    check(flag_port(flag) == ports[port], f"{flag} port {flag_port(flag)} is not container port {port} {ports[port]}")
for flag, port in [("--nats-listen", "nats"), ("--cluster-advertise", "routes")]:
    m = re.search(rf'{flag} "\$\(with_port "\$POD_IP" (\d+)\)"', script)
    check(m and int(m.group(1)) == ports[port], f"{flag} is not POD_IP with container port {port}")
check(f'with_port "$address" {ports["routes"]}' in script, "seeds do not use the routes port")
for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
    get = container[probe]["httpGet"]
    check(get["path"] == path and get["port"] == "metrics", f"{probe}: {get}")
annotations = spec["template"]["metadata"].get("annotations", {})
check(annotations.get("prometheus.io/port") == str(ports["metrics"]), "prometheus.io/port is not the metrics port")

# Replicas, drain timing, secret and data mounts, security.
check(env.get("FLIT_REPLICAS") == str(spec["replicas"]), "FLIT_REPLICAS is not spec.replicas")
flush_ms = int(re.search(r"--shutdown-flush-timeout-ms (\d+)", script).group(1))
prestop = int(env["FLIT_PRESTOP_SECONDS"])
grace = pod["terminationGracePeriodSeconds"]
check(grace >= prestop + flush_ms / 1000 + 5,
      f"terminationGracePeriodSeconds {grace} < preStop {prestop} s + flush {flush_ms} ms + 5 s margin")
check("FLIT_PRESTOP_SECONDS" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"]), "preStop")
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
volumes = {v["name"]: v for v in pod["volumes"]}
secret_file = re.search(r"--cluster-secret-file (\S+)", script).group(1)
check(os.path.dirname(secret_file) == mounts.get("cluster-secret"), f"{secret_file} is not in the secret's mount")
check(volumes["cluster-secret"]["secret"]["secretName"] == secret["metadata"]["name"], "secretName")
check(os.path.basename(secret_file) in secret["stringData"], "the Secret has no key named like the secret file")
check(len(secret["stringData"]["secret"]) >= 32, "the example secret is shorter than 32 bytes")
check(re.search(r"--data-dir (\S+)", script).group(1) == mounts.get("data"), "--data-dir is not the data mount")
security = container["securityContext"]
check(security.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
check(security.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation")
check(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities: drop ALL")
check(pod["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
check(pod["securityContext"].get("seccompProfile", {}).get("type") in ("Unconfined", "Localhost"),
      "seccompProfile must let io_uring through (Unconfined or Localhost)")
resources = container["resources"]
check(resources["requests"] == resources["limits"], "requests != limits: not Guaranteed QoS")
cpus = resources["limits"]["cpu"]
check(re.fullmatch(r"\d+", str(cpus)) is not None, f"cpu {cpus} is not a whole number of CPUs")
check(re.search(rf"--shards {cpus}\b", script) is not None, f"--shards is not the CPU count {cpus}")

# The container file: same user, same ports.
containerfile = open("deploy/container/Containerfile").read()
user = re.search(r"^USER (\d+):(\d+)$", containerfile, re.M)
check(user and int(user.group(1)) == pod["securityContext"]["runAsUser"], "Containerfile USER is not runAsUser")
exposed = {int(p) for line in re.findall(r"^EXPOSE (.*)$", containerfile, re.M) for p in line.split()}
check(exposed == set(ports.values()), f"Containerfile EXPOSE {sorted(exposed)} != container ports")

# The pod command, run: node id from the ordinal, seeds only the names that resolve.
tmp = tempfile.mkdtemp()
with open(f"{tmp}/getent", "w") as f:  # resolves the names listed in FAKE_HOSTS (name=address,...)
    f.write('#!/bin/sh\n'
            'for pair in $(echo "$FAKE_HOSTS" | tr , " "); do\n'
            '  [ "${pair%%=*}" = "$2" ] && { echo "${pair#*=}   $2"; exit 0; }\n'
            'done\nexit 2\n')
with open(f"{tmp}/flit", "w") as f:  # prints its arguments one per line
    f.write('#!/bin/sh\nprintf "%s\\n" "$@"\n')
for name in ("getent", "flit"):
    os.chmod(f"{tmp}/{name}", 0o755)
runnable = script.replace("/usr/local/bin/flit", f"{tmp}/flit")
check(runnable != script, "the pod command does not exec /usr/local/bin/flit")


def run(pod_name, hosts, pod_ip="10.0.0.9", wait="2"):
    environment = dict(os.environ, PATH=f"{tmp}:{os.environ['PATH']}", POD_NAME=pod_name, POD_IP=pod_ip,
                       FAKE_HOSTS=",".join(f"{k}={v}" for k, v in hosts.items()),
                       FLIT_SEED_WAIT_SECONDS=wait, **{k: v for k, v in env.items() if k.startswith("FLIT_")
                                                       and k != "FLIT_SEED_WAIT_SECONDS"})
    started = time.monotonic()
    done = subprocess.run(["/bin/sh", "-c", runnable], env=environment, capture_output=True, text=True, timeout=30)
    arguments = done.stdout.split("\n")
    value = lambda flag: arguments[arguments.index(flag) + 1] if flag in arguments else None
    return done, value, time.monotonic() - started


done, value, elapsed = run("flit-0", {})
check(done.returncode == 0 and value("--node-id") == "1", f"flit-0: node id {value('--node-id')}: {done.stderr}")
check(value("--cluster-seeds") is None, "flit-0 with no peer resolving: no --cluster-seeds")
check(elapsed < 1.5, f"flit-0 waited {elapsed:.1f} s for later pods (it must not)")
check(value("--cluster-advertise") == "10.0.0.9:7422", f"advertise {value('--cluster-advertise')}")
check(value("--nats-listen") == "10.0.0.9:4222", f"nats-listen {value('--nats-listen')}")

done, value, elapsed = run("flit-2", {"flit-0.flit-routes": "10.0.0.1", "flit-1.flit-routes": "10.0.0.2"})
check(value("--node-id") == "3", f"flit-2: node id {value('--node-id')}")
check(value("--cluster-seeds") == "10.0.0.1:7422,10.0.0.2:7422", f"flit-2: seeds {value('--cluster-seeds')}")

done, value, elapsed = run("flit-1", {"flit-2.flit-routes": "10.0.0.3"})
check(value("--node-id") == "2", f"flit-1: node id {value('--node-id')}")
check(value("--cluster-seeds") == "10.0.0.3:7422", f"flit-1: seeds {value('--cluster-seeds')} (flit-0 unresolved)")
check(1.5 <= elapsed < 10, f"flit-1 waited {elapsed:.1f} s for flit-0, expected FLIT_SEED_WAIT_SECONDS (2)")
check("flit-0.flit-routes does not resolve" in done.stderr, f"flit-1: says which peer is missing: {done.stderr}")

done, value, elapsed = run("flit-12", {"flit-0.flit-routes": "fd00::1"}, pod_ip="fd00::9", wait="0")
check(value("--node-id") == "13", f"flit-12: node id {value('--node-id')}")
check(value("--cluster-seeds") == "[fd00::1]:7422", f"IPv6 seed {value('--cluster-seeds')}")
check(value("--cluster-advertise") == "[fd00::9]:7422", f"IPv6 advertise {value('--cluster-advertise')}")

done, value, elapsed = run("flit", {})
check(done.returncode == 2 and "cannot derive --node-id" in done.stderr, f"a name without ordinal: {done.stderr}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("deploy/kubernetes: parses; ports, names, drain timing and security consistent with flit's arguments and "
      "deploy/container/Containerfile; the pod command derives node ids 1, 2, 3, 13 and passes only resolvable seeds")
PY
echo "== deploy/check.sh: OK"
