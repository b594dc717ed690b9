#!/usr/bin/env python3
# dashboards.py - writes the Grafana dashboards the chart ships (charts/tenancy-operator/dashboards/*.json;
# templates/dashboards.yaml puts them in ConfigMaps for the Grafana sidecar). Edit here, run
# `python3 hack/dashboards.py` from the repository root, commit both. tests/integration/
# test_observability.c checks every metric they reference against a live operator's /metrics.
import json
DS = {"type": "prometheus", "uid": "${datasource}"}
def ds_var():
    return {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source",
            "current": {}, "hide": 0, "refresh": 1}
def q_var(name, query, label, include_all=False, multi=False):
    v = {"name": name, "type": "query", "datasource": DS, "label": label,
         "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
         "definition": query, "refresh": 2, "sort": 1, "hide": 0, "current": {},
         "includeAll": include_all, "multi": multi}
    if include_all:
        v["allValue"] = ".*"
    return v
NS = 'namespace=~"$namespace"'
pid = [0]
def panel(title, kind, targets, x, y, w=8, h=7, unit=None, desc=None, extra=None):
    pid[0] += 1
    p = {"id": pid[0], "title": title, "type": kind, "datasource": DS,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [{"datasource": DS, "expr": e, "legendFormat": l, "refId": chr(65 + i),
                      **({"instant": True, "format": "table"} if kind == "table" else {})}
                     for i, (e, l) in enumerate(targets)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if unit: p["fieldConfig"]["defaults"]["unit"] = unit
    if desc: p["description"] = desc
    if extra: p.update(extra)
    return p
def row(title, y):
    pid[0] += 1
    return {"id": pid[0], "type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}
def dashboard(uid, title, desc, variables, panels):
    return {"uid": uid, "title": title, "description": desc, "tags": ["tenancy", "tenancy-operator"],
            "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
            "templating": {"list": variables}, "annotations": {"list": []}, "panels": panels,
            "links": [{"title": "Tenancy dashboards", "type": "dashboards", "tags": ["tenancy"], "asDropdown": True}]}

# 1. operator health
pid[0] = 0
P = []
y = 0
P.append(row("Leadership and reconciles", y)); y += 1
P += [
 panel("Leader", "stat", [(f'max by (pod) (leader_election_master_status{{{NS}}})', "{{pod}}")], 0, y, 6, 5,
       desc="1 on the replica holding the leader Lease; exactly one replica should show 1."),
 panel("Reconciles per second by result", "timeseries", [(f'sum by (result) (rate(controller_runtime_reconcile_total{{{NS}}}[$__rate_interval]))', "{{result}}")], 6, y, 9, 5, "ops"),
 panel("Reconcile errors per second", "timeseries", [(f'sum by (controller) (rate(controller_runtime_reconcile_errors_total{{{NS}}}[$__rate_interval]))', "{{controller}}")], 15, y, 9, 5, "ops"),
]; y += 5
P += [
 panel("Reconcile duration (p50, p99)", "timeseries", [
   (f'histogram_quantile(0.5, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket{{{NS}}}[$__rate_interval])))', "p50"),
   (f'histogram_quantile(0.99, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket{{{NS}}}[$__rate_interval])))', "p99")], 0, y, 8, 7, "s"),
 panel("Workers busy / max", "timeseries", [
   (f'max by (controller) (controller_runtime_active_workers{{{NS}}})', "active {{controller}}"),
   (f'max by (controller) (controller_runtime_max_concurrent_reconciles{{{NS}}})', "max {{controller}}")], 8, y, 8, 7),
 panel("Reconcile rate vs. errors (share)", "timeseries", [
   (f'sum(rate(controller_runtime_reconcile_errors_total{{{NS}}}[$__rate_interval])) / sum(rate(controller_runtime_reconcile_total{{{NS}}}[$__rate_interval]))', "error share")], 16, y, 8, 7, "percentunit",
   desc="TenancyOperatorReconcileErrors fires above 10% for 15 minutes."),
]; y += 7
P.append(row("Work queue", y)); y += 1
P += [
 panel("Queue depth", "timeseries", [(f'max by (name) (workqueue_depth{{{NS}}})', "{{name}}")], 0, y, 6, 7),
 panel("Adds and retries per second", "timeseries", [
   (f'sum by (name) (rate(workqueue_adds_total{{{NS}}}[$__rate_interval]))', "adds {{name}}"),
   (f'sum by (name) (rate(workqueue_retries_total{{{NS}}}[$__rate_interval]))', "retries {{name}}")], 6, y, 6, 7, "ops"),
 panel("Time in queue (p99) and work (p99)", "timeseries", [
   (f'histogram_quantile(0.99, sum by (le) (rate(workqueue_queue_duration_seconds_bucket{{{NS}}}[$__rate_interval])))', "queued p99"),
   (f'histogram_quantile(0.99, sum by (le) (rate(workqueue_work_duration_seconds_bucket{{{NS}}}[$__rate_interval])))', "work p99")], 12, y, 6, 7, "s"),
 panel("Longest running / unfinished work", "timeseries", [
   (f'max(workqueue_longest_running_processor_seconds{{{NS}}})', "longest running"),
   (f'max(workqueue_unfinished_work_seconds{{{NS}}})', "unfinished")], 18, y, 6, 7, "s"),
]; y += 7
P.append(row("Kubernetes API, caches and admission", y)); y += 1
P += [
 panel("API requests per second by code", "timeseries", [(f'sum by (code) (rate(rest_client_requests_total{{{NS}}}[$__rate_interval]))', "{{code}}")], 0, y, 6, 7, "reqps"),
 panel("API request latency p99 by verb", "timeseries", [(f'histogram_quantile(0.99, sum by (le, verb) (rate(rest_client_request_duration_seconds_bucket{{{NS}}}[$__rate_interval])))', "{{verb}}")], 6, y, 6, 7, "s"),
 panel("Cached objects by informer", "timeseries", [(f'max by (informer) (tn_informer_cache_objects{{{NS}}})', "{{informer}}")], 12, y, 6, 7),
 panel("Relists and watch errors", "timeseries", [
   (f'sum by (informer) (rate(tn_informer_relists_total{{{NS}}}[$__rate_interval]))', "relists {{informer}}"),
   (f'sum by (informer) (rate(tn_informer_watch_errors_total{{{NS}}}[$__rate_interval]))', "errors {{informer}}")], 18, y, 6, 7, "ops"),
]; y += 7
P += [
 panel("Admission reviews by result", "timeseries", [(f'sum by (operation, result) (rate(tn_admission_reviews_total{{{NS}}}[$__rate_interval]))', "{{operation}} {{result}}")], 0, y, 8, 7, "reqps"),
 panel("Admission review p99", "timeseries", [(f'histogram_quantile(0.99, sum by (le) (rate(tn_admission_review_seconds_bucket{{{NS}}}[$__rate_interval])))', "p99")], 8, y, 8, 7, "s"),
 panel("Webhook certificate expires in", "stat", [(f'min(tenancy_webhook_certificate_expiry_timestamp_seconds{{{NS}}}) - time()', "")], 16, y, 8, 7, "s",
       desc="TenancyWebhookCertificateExpiringSoon fires below 14 days."),
]; y += 7
P.append(row("Audit trail and databases", y)); y += 1
P += [
 panel("Audit trail enabled / up", "stat", [
   (f'max(tenancy_audit_trail_enabled{{{NS}}})', "enabled"),
   (f'min(tenancy_audit_trail_up{{{NS}}})', "up")], 0, y, 6, 7),
 panel("Audit appends and failures per second", "timeseries", [
   (f'sum(rate(tenancy_audit_appends_total{{{NS}}}[$__rate_interval]))', "appends"),
   (f'sum(rate(tenancy_audit_append_failures_total{{{NS}}}[$__rate_interval]))', "failures")], 6, y, 6, 7, "ops"),
 panel("Database operations per second by server and result", "timeseries", [(f'sum by (server, result) (rate(tenancy_database_operations_total{{{NS}}}[$__rate_interval]))', "{{server}} {{result}}")], 12, y, 12, 7, "ops"),
]; y += 7
P.append(row("Process", y)); y += 1
P += [
 panel("CPU (cores)", "timeseries", [(f'rate(process_cpu_seconds_total{{{NS}}}[$__rate_interval])', "{{pod}}")], 0, y, 6, 7),
 panel("Memory", "timeseries", [
   (f'process_resident_memory_bytes{{{NS}}}', "resident {{pod}}"),
   (f'process_virtual_memory_bytes{{{NS}}}', "virtual {{pod}}")], 6, y, 6, 7, "bytes"),
 panel("Open file descriptors (share of the limit)", "timeseries", [(f'process_open_fds{{{NS}}} / process_max_fds{{{NS}}}', "{{pod}}")], 12, y, 6, 7, "percentunit"),
 panel("Uptime", "stat", [(f'time() - process_start_time_seconds{{{NS}}}', "{{pod}}")], 18, y, 6, 7, "s"),
]
health = dashboard("tenancy-operator-health", "Tenancy operator / Health",
  "The operator's own health: leadership, reconciles, work queue, Kubernetes API, caches, admission, audit trail, databases, process.",
  [ds_var(), q_var("namespace", "label_values(controller_runtime_reconcile_total, namespace)", "Namespace", True, True)], P)

# 2. tenants
pid[0] = 0
F = 'namespace=~"$namespace",plan=~"$plan",region=~"$region"'
P = []
y = 0
P.append(row("Tenants by state", y)); y += 1
for i, st in enumerate(["Draft", "Active", "Suspended", "Archived", "Deleted", "Unknown"]):
    P.append(panel(st, "stat", [(f'sum(max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F},state="{st}"}})) or vector(0)', "")], i * 4, y, 4, 4))
y += 4
P += [
 panel("Tenants by state over time", "timeseries", [(f'sum by (state) (max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F}}}))', "{{state}}")], 0, y, 12, 8),
 panel("All tenants by state (no plan/region filter)", "piechart", [(f'max by (state) (tenancy_tenants{{namespace=~"$namespace"}})', "{{state}}")], 12, y, 12, 8),
]; y += 8
P.append(row("By plan and region", y)); y += 1
P += [
 panel("Tenants by plan", "bargauge", [(f'sum by (plan) (max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F},state!="Deleted"}}))', "{{plan}}")], 0, y, 8, 8),
 panel("Tenants by region", "bargauge", [(f'sum by (region) (max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F},state!="Deleted"}}))', "{{region}}")], 8, y, 8, 8),
 panel("Tenants by isolation", "piechart", [(f'sum by (isolation) (max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F},state!="Deleted"}}))', "{{isolation}}")], 16, y, 8, 8),
]; y += 8
P.append(panel("Plan x region x state", "table", [(f'sum by (plan, region, isolation, state) (max by (plan, region, isolation, state) (tenancy_tenant_placements{{{F}}}))', "")], 0, y, 24, 8)); y += 8
P.append(row("Health", y)); y += 1
NSF = 'namespace=~"$namespace"'
P += [
 panel("Tenants not Ready by reason", "timeseries", [(f'sum by (reason) (max by (type, status, reason) (tenancy_tenant_conditions{{{NSF},type="Ready",status!="True"}}))', "{{reason}}")], 0, y, 12, 8,
       desc="TenancyTenantsNotReady fires when this stays above 0 for 15 minutes."),
 panel("Conditions not True", "table", [(f'max by (type, status, reason) (tenancy_tenant_conditions{{{NSF},status!="True"}})', "")], 12, y, 12, 8),
]; y += 8
P += [
 panel("Break-glass grants active", "stat", [(f'max(tenancy_breakglass_grants_active{{{NSF}}})', "")], 0, y, 6, 6),
 panel("Break-glass requests by state", "timeseries", [(f'max by (state) (tenancy_breakglass_requests{{{NSF}}})', "{{state}}")], 6, y, 6, 6),
 panel("Tenants with data keys", "stat", [(f'max(tenancy_tenant_keys{{{NSF}}})', "")], 12, y, 6, 6),
 panel("Oldest current data key", "stat", [(f'max(tenancy_tenant_key_age_seconds_max{{{NSF}}})', "")], 18, y, 6, 6, "s",
       desc="Keys rotate every --keys-rotation-period (default 90 days)."),
]
tenants = dashboard("tenancy-tenants", "Tenancy / Tenants",
  "Tenants by state, plan, region and isolation; readiness, break-glass and data keys. Counts come from the operator's Tenant cache (bounded cardinality).",
  [ds_var(), q_var("namespace", "label_values(tenancy_tenants, namespace)", "Namespace", True, True),
   q_var("plan", 'label_values(tenancy_tenant_placements{namespace=~"$namespace"}, plan)', "Plan", True, True),
   q_var("region", 'label_values(tenancy_tenant_placements{namespace=~"$namespace"}, region)', "Region", True, True)], P)

# 3. tenant drill-down
pid[0] = 0
T = 'namespace=~"$namespace",tenant="$tenant"'
P = []
y = 0
P.append(panel("About", "text", [], 0, y, 24, 3, extra={"options": {"mode": "markdown", "content":
  "Per-tenant series need the operator flag `--metrics-per-tenant` (chart: `extraArgs: [--metrics-per-tenant]`): one series per tenant and condition. "
  "Without it this dashboard stays empty; the *Tenancy / Tenants* dashboard shows the bounded counts."}})); y += 3
P += [
 panel("State, plan and placement", "table", [(f'max by (tenant, state, plan, region, isolation) (tenancy_tenant_info{{{T}}})', "")], 0, y, 24, 5),
]; y += 5
P += [
 panel("Ready", "stat", [(f'max(tenancy_tenant_condition{{{T},type="Ready",status="True"}}) or vector(0)', "")], 0, y, 6, 5,
       extra={"fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {"0": {"text": "Not Ready", "color": "red"}, "1": {"text": "Ready", "color": "green"}}}]}, "overrides": []}}),
 panel("Data key age", "stat", [(f'time() - max(tenancy_tenant_key_rotated_timestamp_seconds{{{T}}})', "")], 6, y, 6, 5, "s"),
 panel("Break-glass grants active", "stat", [(f'max(tenancy_tenant_breakglass_grants_active{{{T}}})', "")], 12, y, 6, 5),
 panel("Conditions not True", "stat", [(f'count(max by (type) (tenancy_tenant_condition{{{T},status!="True"}})) or vector(0)', "")], 18, y, 6, 5),
]; y += 5
P += [
 panel("Conditions now", "table", [(f'max by (type, status, reason) (tenancy_tenant_condition{{{T}}})', "")], 0, y, 12, 10),
 panel("Conditions over time (1 = True)", "state-timeline", [(f'max by (type) (tenancy_tenant_condition{{{T},status="True"}})', "{{type}}")], 12, y, 12, 10),
]; y += 10
P.append(panel("State over time", "state-timeline", [(f'max by (state) (tenancy_tenant_info{{{T}}})', "{{state}}")], 0, y, 24, 5))
tenant = dashboard("tenancy-tenant", "Tenancy / Tenant",
  "One tenant: state, placement, conditions, data key age and break-glass grants (needs --metrics-per-tenant).",
  [ds_var(), q_var("namespace", "label_values(tenancy_tenant_info, namespace)", "Namespace", False, False),
   q_var("tenant", 'label_values(tenancy_tenant_info{namespace=~"$namespace"}, tenant)', "Tenant")], P)

for name, d in [("operator-health", health), ("tenants", tenants), ("tenant", tenant)]:
    with open(f"charts/tenancy-operator/dashboards/{name}.json", "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
