#!/usr/bin/env bash
# alerts-test.sh - the operator's alerts: the chart's PrometheusRule (rendered with helm, default
# values) must equal manifests/monitoring/prometheus-rules.yaml, pass `promtool check rules`, and
# pass `promtool test rules tests/alerts/*.yaml`, where every alert has a case where it fires and
# one where it does not; every alert has a runbook docs/runbooks/<AlertName>.md (with the sections
# what it means / diagnose / recover) and a runbook_url pointing at it.
#
#   hack/alerts-test.sh            check (exit 1 on any failure)
#   hack/alerts-test.sh --update   rewrite manifests/monitoring/prometheus-rules.yaml from the chart
# Needs promtool (Debian package prometheus, hack/install-deps.sh), python3-yaml, and helm
# (hack/build-helm.sh). hack/test.sh runs it with the unit suites.
set -euo pipefail
LOG_TAG=alerts
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

UPDATE=0
[ "${1:-}" = --update ] && UPDATE=1
command -v promtool >/dev/null || die "promtool not found: apt-get install prometheus (hack/install-deps.sh)"
HELM=${TENANCY_HELM:-$("$HACK/build-helm.sh" 2>/dev/null | tail -n 1)}
[ -x "$HELM" ] || die "no helm binary (hack/build-helm.sh)"
RULES=manifests/monitoring/prometheus-rules.yaml
work=$(mktemp -d "${TMPDIR:-/tmp}/alerts-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The chart's rules with the default values (release "tenancy-operator"), as a plain rules file.
"$HELM" template tenancy-operator charts/tenancy-operator -n tenancy-system --set prometheusRule.enabled=true \
  --show-only templates/prometheusrule.yaml >"$work/rule.yaml"
python3 - "$work/rule.yaml" "$work/rules.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
def block(dumper, s):  # multi-line expressions as literal blocks, as written in the chart
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
yaml.SafeDumper.add_representer(str, block)
head = ("# prometheus-rules.yaml - the tenancy operator's alerts as a plain Prometheus rules file,\n"
        "# generated from charts/tenancy-operator/templates/prometheusrule.yaml with the default values\n"
        "# (hack/alerts-test.sh --update); load it with rule_files: in prometheus.yml when you do not run\n"
        "# the Prometheus Operator. Runbooks: docs/runbooks/<AlertName>.md. Do not edit by hand.\n")
with open(sys.argv[2], "w") as f:
    f.write(head)
    yaml.safe_dump(doc["spec"], f, sort_keys=False, width=1000)
PY
if [ $UPDATE = 1 ]; then
  cp "$work/rules.yaml" "$RULES"
  log "wrote $RULES"
elif ! diff -u "$RULES" "$work/rules.yaml" >"$work/diff"; then
  cat "$work/diff" >&2
  die "$RULES differs from the chart's PrometheusRule: run hack/alerts-test.sh --update"
fi

promtool check rules "$RULES" >&2 || die "promtool check rules $RULES failed"
# promtool test rules resolves rule_files relative to each test file.
promtool test rules tests/alerts/*.test.yaml >&2 || die "promtool test rules failed"

# Every alert: a case that fires and one that does not; a runbook with its sections; runbook_url.
python3 - "$RULES" tests/alerts/*.test.yaml <<'PY' || die "alert coverage check failed"
import os, sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
fires, quiet = set(), set()
for path in sys.argv[2:]:
    for t in yaml.safe_load(open(path)).get("tests", []):
        for a in t.get("alert_rule_test", []):
            (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
bad = []
for name, r in alerts.items():
    if name not in fires: bad.append(f"{name}: no promtool test case where it fires")
    if name not in quiet: bad.append(f"{name}: no promtool test case where it does not fire")
    url = r.get("annotations", {}).get("runbook_url", "")
    if not url.endswith(f"/{name}.md"): bad.append(f"{name}: runbook_url {url!r} does not end with /{name}.md")
    for k in ("summary", "description"):
        if not r.get("annotations", {}).get(k): bad.append(f"{name}: no {k} annotation")
    rb = f"docs/runbooks/{name}.md"
    if not os.path.isfile(rb):
        bad.append(f"{name}: {rb} is missing")
    else:
        text = open(rb).read().lower()
        for sec in ("## what it means", "## diagnose", "## recover"):
            if sec not in text: bad.append(f"{rb}: no '{sec}' section")
        if "```" not in text: bad.append(f"{rb}: no commands")
for extra in sorted((fires | quiet) - set(alerts)):
    bad.append(f"tests name an alert that does not exist: {extra}")
for b in bad: print("alerts-test:", b, file=sys.stderr)
print(f"alerts-test: {len(alerts)} alerts, each with firing and quiet cases and a runbook", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
log "ok: $RULES matches the chart, promtool check and test rules pass"
