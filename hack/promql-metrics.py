#!/usr/bin/env python3
"""promql-metrics.py - the metric names that Grafana dashboards (JSON: every panel target's expr and
every query variable's label_values()/query_result()) and Prometheus rule files (YAML: every rule's
expr) reference, one per line, sorted. tests/integration/test_observability.c checks each against a
live operator's /metrics. Usage: hack/promql-metrics.py FILE... (-v: also print where each is used)
"""
import json, re, sys

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan", "atan2", "start", "end"}
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"(0x[0-9a-fA-F]+|\d+(\.\d*)?([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)")

def strip_strings(e):
    return re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|`[^`]*`', '""', e)

def strip_brackets(e, open_, close):
    out, depth = [], 0
    for ch in e:
        if ch == open_:
            depth += 1
            if depth == 1:
                out.append(open_)
            continue
        if ch == close and depth:
            depth -= 1
            if depth == 0:
                out.append(close)
            continue
        if not depth:
            out.append(ch)
    return "".join(out)

def metric_names(expr):
    """Metric names of a PromQL expression: identifiers that are not functions, keywords, label
    names (inside {} or the label lists of by/without/on/ignoring/group_*), strings or durations."""
    e = strip_strings(expr)
    e = strip_brackets(e, "{", "}")
    e = strip_brackets(e, "[", "]")
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names, i = set(), 0
    while i < len(e):
        m = NUMBER.match(e, i) if (e[i].isdigit() or (e[i] == "." and i + 1 < len(e) and e[i + 1].isdigit())) else None
        if m:
            i = m.end()
            continue
        m = IDENT.match(e, i)
        if not m:
            i += 1
            continue
        if i > 0 and (e[i - 1].isalnum() or e[i - 1] in "_$"):  # a duration's unit, a $variable
            i = m.end()
            continue
        word, j = m.group(0), m.end()
        while j < len(e) and e[j] in " \t\n":
            j += 1
        if word.lower() not in KEYWORDS and not (j < len(e) and e[j] == "("):
            names.add(word)
        i = m.end()
    return names

def variable_names(q):
    """Metric names of a Grafana Prometheus variable query."""
    if isinstance(q, dict):
        q = q.get("query", "")
    q = q or ""
    m = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{,)]", q)
    if m:
        return {m.group(1)}
    m = re.match(r"\s*query_result\((.*)\)\s*$", q, re.S)
    if m:
        return metric_names(m.group(1))
    m = re.match(r"\s*metrics\(", q)
    return set() if m else metric_names(q) if q.strip() and not q.strip().startswith("label_names") else set()

def walk_panels(panels):
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))

def from_dashboard(d):
    uses = []
    for p in walk_panels(d.get("panels")):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                uses += [(n, f'panel "{p.get("title")}"') for n in metric_names(t["expr"])]
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            uses += [(n, f'variable ${v.get("name")}') for n in variable_names(v.get("query"))]
    return uses

def from_rules(doc):
    uses = []
    for g in (doc or {}).get("groups", []):
        for r in g.get("rules", []):
            uses += [(n, f'rule {r.get("alert") or r.get("record")}') for n in metric_names(str(r.get("expr", "")))]
    return uses

def main(argv):
    verbose = "-v" in argv
    files = [a for a in argv if a != "-v"]
    if not files:
        print(__doc__, file=sys.stderr)
        return 2
    uses = []
    for path in files:
        text = open(path).read()
        if path.endswith(".json"):
            uses += [(n, f"{path}: {w}") for n, w in from_dashboard(json.loads(text))]
        else:
            import yaml
            for doc in yaml.safe_load_all(text):
                if doc and doc.get("kind") == "PrometheusRule":
                    doc = doc.get("spec")
                uses += [(n, f"{path}: {w}") for n, w in from_rules(doc)]
    for name in sorted({n for n, _ in uses}):
        print(name if not verbose else f"{name}\t" + "; ".join(sorted({w for n, w in uses if n == name})))
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
