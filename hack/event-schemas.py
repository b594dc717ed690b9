#!/usr/bin/env python3
# event-schemas.py - writes docs/events/<type>.json, the JSON Schema (draft 2020-12) of each
# lifecycle CloudEvent (docs/events/README.md). Run it after changing an event's data; the files
# are committed, and tests/integration/test_outbox.c validates what the operator stores with them.
import json
import os
import sys

STATES = ["Draft", "Active", "Suspended", "Archived", "Deleted"]


def transition(frm, to):
    from_schema = {"type": "null"} if frm is None else {"enum": frm}
    if isinstance(frm, list) and None in frm:
        from_schema = {"enum": frm}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["from", "to", "generation"],
        "properties": {
            "from": dict(from_schema, description="the state before; null for a tenant seen for the first time"),
            "to": {"const": to, "description": "the state reached"},
            "generation": {"type": "integer", "minimum": 1, "description": "the Tenant's metadata.generation"},
            "stateReason": {"type": "string", "description": "spec.stateReason, when set"},
            "plan": {"type": "string", "description": "spec.plan, when set"},
            "region": {"type": "string", "description": "status.placement.region, when placed"},
        },
    }


NULLABLE = lambda s: {"anyOf": [s, {"type": "null"}]}

EVENTS = {
    "created": ("A Tenant was seen for the first time and is Draft.", transition(None, "Draft")),
    "activated": ("A Draft tenant became Active (its effects are in place).", transition(["Draft"], "Active")),
    "suspended": ("An Active tenant was Suspended.", transition(["Active"], "Suspended")),
    "resumed": ("A Suspended tenant is Active again.", transition(["Suspended"], "Active")),
    "archived": ("A tenant was Archived.", transition(["Active", "Suspended"], "Archived")),
    "restored": ("An Archived tenant is Active again, its retained data restored.", transition(["Archived"], "Active")),
    "deleted": (
        "A tenant was Deleted (spec.state Deleted with the confirmation, or `kubectl delete tenant`).",
        transition(["Draft", "Active", "Suspended", "Archived", None], "Deleted"),
    ),
    "updated": (
        "The tenant's metadata changed: plan, contacts, externalIds, identity or residency.",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["changed", "generation", "previousGeneration"],
            "properties": {
                "changed": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"enum": ["plan", "contacts", "externalIds", "identity", "residency"]},
                    "description": "the areas that changed; each has its new value (null: removed) below",
                },
                "generation": {"type": "integer", "minimum": 1},
                "previousGeneration": {"type": "integer", "minimum": 1},
                "plan": NULLABLE({"type": "string"}),
                "contacts": NULLABLE({"type": "array", "items": {"type": "object"}}),
                "externalIds": NULLABLE({"type": "object", "additionalProperties": {"type": "string"}}),
                "identity": NULLABLE({"type": "object"}),
                "residency": NULLABLE({"type": "object"}),
            },
        },
    ),
    "credentials.rotated": (
        "The tenant's database credentials were rotated (the new password is never in the event).",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["credentialsVersion"],
            "properties": {
                "credentialsVersion": {"type": "integer", "minimum": 1},
                "why": {"type": "string"},
            },
        },
    ),
    "key.rotated": (
        "A new version of the tenant's data key was made (no key material in the event).",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["versionBefore", "versionAfter"],
            "properties": {
                "versionBefore": {"type": "integer", "minimum": 0},
                "versionAfter": {"type": "integer", "minimum": 1},
                "trigger": {"enum": ["on-demand", "schedule", "first", ""]},
            },
        },
    ),
    "placement.decided": (
        "The tenant was placed in a region (its first placement or a change).",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["region", "isolation"],
            "properties": {
                "region": {"type": "string", "minLength": 1},
                "isolation": {"enum": ["shared", "dedicated", "hybrid"]},
                "previousRegion": NULLABLE({"type": "string"}),
            },
        },
    ),
    "quota.changed": (
        "The tenant's effective quotas changed (a Plan edit, another plan, quotaOverrides).",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["quotas"],
            "properties": {
                "quotas": {"type": "object"},
                "previous": NULLABLE({"type": "object"}),
            },
        },
    ),
}


def schema(name, title, data):
    t = "dev.tenancy.tenant.%s.v1" % name
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tenancy.dev/events/%s.json" % t,
        "title": t,
        "description": title + " CloudEvents 1.0, structured JSON mode (docs/events/README.md).",
        "type": "object",
        "additionalProperties": False,
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype",
                     "tenancysequence", "correlationid", "actor", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string",
                   "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                   "description": "a UUID; also the webhook-id; the same event is never stored twice"},
            "source": {"type": "string", "pattern": "^tenancy\\.dev/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                       "description": "tenancy.dev/<cluster name> (--cluster-name)"},
            "type": {"const": t},
            "subject": {"type": "string", "pattern": "^tenant/.+$", "description": "tenant/<metadata.name>"},
            "time": {"type": "string", "format": "date-time",
                     "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$",
                     "description": "when the audit row of the event was written (UTC)"},
            "datacontenttype": {"const": "application/json"},
            "tenancysequence": {"type": "integer", "minimum": 1,
                                "description": "the tenant's sequence: 1, 2, 3, ... without gaps"},
            "correlationid": {"type": "string", "minLength": 1,
                              "description": "the correlation id of the audit rows, Events and logs"},
            "actor": {"type": "string", "minLength": 1,
                      "description": "who asked for it, or tenancy-operator for its own actions"},
            "data": data,
        },
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "docs", "events")
    for name, (title, data) in EVENTS.items():
        path = os.path.join(out, "dev.tenancy.tenant.%s.v1.json" % name)
        with open(path, "w") as f:
            json.dump(schema(name, title, data), f, indent=2)
            f.write("\n")


main()
