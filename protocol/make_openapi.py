#!/usr/bin/env python3
"""Writes protocol/openapi-node.json and protocol/openapi-hub.json (OpenAPI 3.1) from the JSON
Schemas in protocol/schemas and the routes below.

Run after changing a route or a schema; `scripts/test` checks the files are up to date
(`--check`) and fuzzes both servers from them with schemathesis.
"""
import json
import pathlib
import sys

here = pathlib.Path(__file__).parent
schemas = {p.name: json.loads(p.read_text()) for p in (here / "schemas").glob("*.schema.json")}
COMPONENT = {
    "member-view.schema.json": "MemberView",
    "operation.schema.json": "Operation",
    "programme.schema.json": "Programme",
    "error.schema.json": "Error",
    "snapshot.schema.json": "Snapshot",
    "push-request.schema.json": "PushRequest",
    "push-response.schema.json": "PushResponse",
    "pull-response.schema.json": "PullResponse",
    "authorize-request.schema.json": "AuthorizeRequest",
    "authorize-response.schema.json": "AuthorizeResponse",
}


def rewrite(node, defs):
    """JSON Schema file references become component references; $defs are lifted."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("$schema", "$id"):
                continue
            if k == "$defs":
                for name, d in v.items():
                    defs[name[0].upper() + name[1:]] = rewrite(d, defs)
                continue
            if k == "$ref":
                ref = v
                if ref.startswith("#/$defs/"):
                    name = ref.split("/")[-1]
                    out[k] = "#/components/schemas/" + name[0].upper() + name[1:]
                    continue
                file, _, pointer = ref.partition("#")
                if file in COMPONENT:
                    if pointer.startswith("/$defs/"):
                        name = pointer.split("/")[-1]
                        out[k] = "#/components/schemas/" + name[0].upper() + name[1:]
                    else:
                        out[k] = "#/components/schemas/" + COMPONENT[file] + pointer.replace("#", "")
                    continue
            out[k] = rewrite(v, defs)
        return out
    if isinstance(node, list):
        return [rewrite(x, defs) for x in node]
    return node


def components():
    defs = {}
    out = {}
    for file, name in COMPONENT.items():
        if file in schemas:
            out[name] = rewrite(schemas[file], defs)
    out.update(defs)
    # The body of each kind is specified in schemas/operation.schema.json (if/then per kind);
    # here the envelope alone, which every fuzzer can generate.
    out["Operation"].pop("allOf", None)
    money = {"type": "integer"}
    out["Transaction"] = {
        "type": "object",
        "required": ["id", "kind", "member", "value_change", "points_change", "authorization"],
        "properties": {
            "id": {"type": "string"}, "kind": {"type": "string"}, "member": {"type": "string"},
            "amount": money, "value_change": money, "points_change": money, "points_earned": money,
            "points_redeemed": money, "value_spent": money, "refund_of": {"type": "string"},
            "authorization": {"enum": ["hub", "offline", "lease", "none"]}, "cash": money,
            "receipt": {"type": "object"},
        },
    }
    out["TransactionResult"] = {
        "type": "object", "required": ["transaction", "member"],
        "properties": {"transaction": {"$ref": "#/components/schemas/Transaction"},
                       "member": {"$ref": "#/components/schemas/MemberView"}},
    }
    out["Quote"] = {
        "type": "object", "required": ["quote", "purchase", "cash_due"],
        "properties": {"quote": {"type": "string"}, "purchase": {"type": "object"}, "cash_due": money},
    }
    out["Status"] = {
        "type": "object",
        "required": ["store", "online", "bootstrapped", "pending_ops", "rejected_ops", "cursor"],
        "properties": {"store": {"type": "string"}, "online": {"type": "boolean"}, "bootstrapped": {"type": "boolean"},
                       "pending_ops": {"type": "integer"}, "rejected_ops": {"type": "integer"}, "cursor": {"type": "integer"},
                       "last_sync_at": {"type": "string"}, "last_error": {"type": "string"}, "progress": {"type": "string"}},
    }
    return out


def strict(props, required=()):
    """A request body: no other fields; an optional field may also be null (read as absent)."""
    def nullable(schema):
        out = dict(schema)
        out["type"] = [schema["type"], "null"]
        return out
    props = {k: (v if k in required else nullable(v)) for k, v in props.items()}
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": props}


AMOUNT = {"type": "integer", "minimum": 1, "maximum": 1_000_000_000_000}
# What the node accepts, no more and no less where JSON Schema can say it (the node also
# counts a phone's digits, 5 to 20, and trims names).
NAME = {"type": "string", "minLength": 1, "maxLength": 200}
PHONE = {"type": "string", "pattern": "^\\s*\\+?[0-9 .()-]*\\s*$"}
BIRTHDAY = {"type": "string", "pattern": "^((19[0-9]{2}|20[0-9]{2}|21[0-9]{2}|2200)-)?(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"}
CARD = {"type": "string", "pattern": "^\\s*[A-Za-z0-9_-]{1,64}\\s*$"}
EVENT_TYPES = ["member.enrolled", "tier.changed", "member.dormant", "member.birthday", "points.expiring", "value.recharged", "overdraft"]
REQUESTS = {
    "Enrol": strict({"name": NAME, "phone": PHONE, "birthday": BIRTHDAY, "referrer": {"type": "string"}, "card": CARD}, ["name", "phone"]),
    "Update": strict({"name": NAME, "phone": PHONE, "birthday": BIRTHDAY}),
    "Recharge": strict({"amount": AMOUNT}, ["amount"]),
    "Purchase": strict({"amount": AMOUNT, "pay_from_balance": {"type": "boolean"},
                        "redeem_points": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000_000}, "coupon": {"type": "string"},
                        "quote": {"type": "string"}, "member_amount": AMOUNT}, ["amount"]),
    "NewCard": strict({"card": CARD}),
    "Refund": strict({"amount": AMOUNT}),
    "Activity": strict({"activity": {"type": "string"}}, ["activity"]),
    "Membership": strict({"plan": {"type": "string"}}, ["plan"]),
    "PointsAward": strict({"activity": {"type": "string"}, "points": {"type": "integer"}, "reason": {"type": "string"}}),
    "Webhook": strict({"url": {"type": "string", "minLength": 1, "maxLength": 2000},
                       "events": {"type": "array", "minItems": 1, "items": {"enum": EVENT_TYPES}},
                       "secret": {"type": "string", "minLength": 16, "maxLength": 200}}, ["url", "events"]),
}


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def answer(schema_name, description):
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


def errors(*codes):
    text = {400: "invalid request", 401: "missing or bad credentials", 402: "not enough balance or points",
            403: "not allowed", 404: "not found", 409: "conflicts with the current state", 422: "unprocessable",
            429: "too many requests (see Retry-After)", 503: "not ready (a node not yet bootstrapped)"}
    return {str(c): answer("Error", text[c]) for c in codes}


def op(summary, responses, body=None, params=(), idempotent=False, secure=False, operation_id=None, links=None):
    o = {"summary": summary, "responses": responses}
    if operation_id:
        o["operationId"] = operation_id
    if links:
        for status, link in links.items():
            o["responses"][status]["links"] = link
    parameters = list(params)
    if idempotent:
        parameters.append({"name": "Idempotency-Key", "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 1, "maxLength": 255}})
    if parameters:
        o["parameters"] = parameters
    if body:
        o["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if secure:
        o["security"] = [{"bearer": []}]
    return o


def path(name):
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def node_api():
    member = [path("id")]
    writes = (400, 404, 409, 422, 429, 503)
    paths = {
        "/healthz": {"get": op("Liveness", {"200": {"description": "up", "content": {"application/json": {"schema": {"type": "object"}}}}})},
        "/metrics": {"get": op("Metrics in Prometheus's text format", {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/readyz": {"get": op("Readiness: the node has loaded the chain", {"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                                           **errors(429, 503)})},
        "/v1/status": {"get": op("The node's sync state", {"200": answer("Status", "status"), **errors(429)})},
        "/v1/rules": {"get": op("The programme this node prices with", {"200": answer("Programme", "programme"), **errors(429)})},
        "/v1/members": {
            "post": op("Enrol a member", {"201": answer("MemberView", "enrolled"), **errors(*writes)},
                       body=ref("EnrolRequest"), idempotent=True, operation_id="enrol",
                       links={"201": {
                           **{name: {"operationId": name, "parameters": {"id": "$response.body#/id"}}
                              for name in ["getMember", "updateMember", "recharge", "quote", "purchase", "activity", "membership", "newCard"]},
                           **{name: {"operationId": name, "parameters": {"card": "$response.body#/card"}} for name in ["getCard", "blockCard"]},
                       }}),
            "get": op("Find a member by phone", {"200": answer("MemberView", "member"), **errors(400, 404, 429)},
                      params=[{"name": "phone", "in": "query", "required": True, "schema": {"type": "string"}}]),
        },
        "/v1/members/{id}": {
            "get": op("A member", {"200": answer("MemberView", "member"), **errors(404, 429)}, operation_id="getMember", params=member),
            "patch": op("Change profile fields", {"200": answer("MemberView", "member"), **errors(*writes)},
                        body=ref("UpdateRequest"), operation_id="updateMember", params=member, idempotent=True),
        },
        "/v1/members/{id}/offline": {"get": op("What this store may take from the member while the hub is unreachable (its lease, or what is left of today's limit)", {
            "200": {"description": "the offline allowance", "content": {"application/json": {"schema": {
                "type": "object", "required": ["member", "store", "policy", "value", "points"],
                "properties": {"member": {"type": "string"}, "store": {"type": "string"}, "policy": {"type": "string", "enum": ["leases", "daily_limit"]},
                               "value": {"type": "integer", "minimum": 0}, "points": {"type": "integer", "minimum": 0},
                               "ends_at": {"type": "string", "format": "date-time"}}}}}},
            **errors(404, 429)}, operation_id="offlineAllowance", params=member)},
        "/v1/members/{id}/recharge": {"post": op("Load stored value", {"201": answer("TransactionResult", "recharged"), **errors(*writes)},
                                                 body=ref("RechargeRequest"), operation_id="recharge", params=member, idempotent=True)},
        "/v1/members/{id}/quote": {"post": op("Price a sale without recording it", {"200": answer("Quote", "quote"), **errors(400, 402, 404, 409, 429, 503)},
                                              body=ref("PurchaseRequest"), operation_id="quote", params=member)},
        "/v1/members/{id}/purchase": {"post": op("Sell", {"201": answer("TransactionResult", "sold"), **errors(400, 402, 404, 409, 422, 429, 503)},
                                                 body=ref("PurchaseRequest"), operation_id="purchase", params=member, idempotent=True,
                                                 links={"201": {"refund": {"operationId": "refund", "parameters": {"id": "$response.body#/transaction/id"}}}})},
        "/v1/members/{id}/activities": {"post": op("Participation points", {"201": answer("MemberView", "awarded"), **errors(*writes)},
                                                   body=ref("ActivityRequest"), operation_id="activity", params=member, idempotent=True)},
        "/v1/members/{id}/memberships": {"post": op("Sell a paid membership", {"201": answer("MemberView", "sold"), **errors(*writes)},
                                                    body=ref("MembershipRequest"), operation_id="membership", params=member, idempotent=True)},
        "/v1/members/{id}/cards": {"post": op("Issue a replacement card", {"201": answer("MemberView", "issued"), **errors(*writes)},
                                              body=ref("NewCardRequest"), operation_id="newCard", params=member, idempotent=True)},
        "/v1/transactions/{id}/refund": {"post": op("Refund all or part of a sale or recharge",
                                                    {"201": answer("TransactionResult", "refunded"), **errors(400, 402, 404, 409, 422, 429, 503)},
                                                    body=ref("RefundRequest"), operation_id="refund", params=[path("id")], idempotent=True)},
        "/v1/cards/{card}": {"get": op("The member holding a card", {"200": answer("MemberView", "member"), **errors(404, 409, 429)}, operation_id="getCard", params=[path("card")])},
        "/v1/cards/{card}/block": {"post": op("Block a card", {"200": answer("MemberView", "blocked"), **errors(*writes)},
                                              operation_id="blockCard", params=[path("card")], idempotent=True)},
    }
    return paths


def hub_api():
    sync = [{"name": "Tessera-Protocol", "in": "header", "required": True, "schema": {"type": "string", "enum": ["1"]}}]
    read = (400, 401, 403, 429)
    paths = {
        "/healthz": {"get": op("Liveness, and how the hub's database is", {"200": {"description": "up", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"status": {"type": "string"}, "database": {"type": "string", "enum": ["ok", "unavailable"]}}}}}}})},
        "/metrics": {"get": op("Metrics in Prometheus's text format", {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        "/readyz": {"get": op("Readiness: the hub's database answers", {"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                                         **errors(429, 503)})},
        "/v1/sync/push": {"post": op("A store pushes its operations", {"200": answer("PushResponse", "results"), **errors(400, 401, 403, 429, 503)},
                                     body=ref("PushRequest"), secure=True)},
        "/v1/sync/authorize": {"post": op("A store asks to authorise a spend", {"200": answer("AuthorizeResponse", "decision"), **errors(400, 401, 403, 429, 503)},
                                          body=ref("AuthorizeRequest"), secure=True)},
        "/v1/sync/pull": {"get": op("Operations after a version: pages end at multiples of 1000 versions; a whole page is gzipped for a node that takes it (spec section 6.2)",
                                    {"200": {**answer("PullResponse", "page"), "headers": {
                                        "Content-Encoding": {"description": "gzip: a whole page, asked for with Accept-Encoding: gzip and limit=1000",
                                                             "schema": {"type": "string", "enum": ["gzip"]}},
                                        "Vary": {"description": "Accept-Encoding", "schema": {"type": "string"}}}},
                                     **errors(400, 401, 429, 503)},
                                    params=sync + [{"name": "after", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                                                   {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
                                                   {"name": "pending", "in": "query", "required": False, "schema": {"type": "integer"}}],
                                    secure=True)},
        "/v1/sync/snapshot": {"get": op("The folded state, for a new node (whole, or in pages with ?page=first, then ?page=<next>)",
                                        {"200": answer("Snapshot", "snapshot"), **errors(400, 401, 429, 503)},
                                        params=sync + [{"name": "page", "in": "query", "required": False, "schema": {"type": "string"}},
                                                       {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}}],
                                        secure=True)},
        "/v1/sync/snapshot/file": {"get": op("The folded state as one SQLite file, for a new node (spec section 6.4)",
                                             {"200": {"description": "a SQLite database: the state tables and snapshot_meta (the same file for every store while it is fresh)",
                                                      "headers": {"Tessera-Origin-Seq": {"description": "the asking store's highest sequence number the hub holds, read when it asked",
                                                                                         "required": True, "schema": {"type": "integer", "minimum": 0}}},
                                                      "content": {"application/vnd.sqlite3": {"schema": {"type": "string", "format": "binary"}}}},
                                              **errors(400, 401, 429, 503)},
                                             params=sync, secure=True)},
        "/v1/members": {"get": op("Every member", {"200": {"description": "members", "content": {"application/json": {"schema": {
            "type": "object", "required": ["members"], "properties": {"members": {"type": "array", "items": ref("MemberView")}}}}}},
            **errors(*read)}, secure=True)},
        "/v1/members/{id}": {"get": op("A member", {"200": answer("MemberView", "member"), **errors(*read, 404)}, params=[path("id")], secure=True)},
        "/v1/members/{id}/points": {"post": op("Award or take points", {"201": answer("MemberView", "member"), **errors(*read, 402, 404, 422)},
                                               body=ref("PointsAwardRequest"), params=[path("id")], secure=True)},
        "/v1/stores": {"get": op("Every store's sync state", {"200": {"description": "stores", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                              **errors(*read)}, secure=True)},
        "/v1/exceptions": {"get": op("Overdrafts, merges, rejections, reused coupons", {"200": {"description": "exceptions", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                                                         **errors(*read)},
                                     params=[{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}], secure=True)},
        "/v1/rules": {
            "get": op("The programme in force", {"200": answer("Programme", "programme"), **errors(*read)}, secure=True),
            "put": op("Publish a programme version", {"201": {"description": "published", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                       **errors(*read, 409, 422)}, body=ref("Programme"), secure=True),
        },
        "/v1/jobs/run": {"post": op("Run the scheduled jobs now", {"200": {"description": "report", "content": {"application/json": {"schema": {"type": "object"}}}},
                                                                    **errors(*read)}, secure=True)},
        "/v1/members/{id}/leases": {"get": op("Who holds the member's rights under escrow leases: the hub, and each store's lease with what is asked back", {
            "200": {"description": "the leases", "content": {"application/json": {"schema": {
                "type": "object", "required": ["member", "leases", "balance", "points_available", "hub_value", "hub_points", "stores"],
                "properties": {"member": {"type": "string"}, "leases": {"type": "boolean"}, "balance": {"type": "integer"},
                               "points_available": {"type": "integer"}, "hub_value": {"type": "integer"}, "hub_points": {"type": "integer"},
                               "stores": {"type": "array", "items": {"type": "object", "required": ["store", "value", "points", "ends_at", "recalled_value", "recalled_points"],
                                          "properties": {"store": {"type": "string"}, "value": {"type": "integer"}, "points": {"type": "integer"},
                                                         "ends_at": {"type": "string", "format": "date-time"},
                                                         "recalled_value": {"type": "integer"}, "recalled_points": {"type": "integer"}}}}}}}}},
            **errors(*read, 404)}, params=[path("id")], secure=True)},
        "/v1/members/{id}/statement": {"get": op("Every movement behind one member's balance and points, in log order", {
            "200": {"description": "the statement", "content": {"application/json": {"schema": {"type": "object", "required": ["member", "lines"]}},
                                                                "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read, 404)},
            params=[path("id"), {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/segments/{name}": {"get": op("A segment of members (dormant, activity, one_timers, birthdays, top, memberships_ending, points_expiring, tiers, tier_movements)", {
            "200": {"description": "the segment", "content": {"application/json": {"schema": {"type": "object", "required": ["segment", "as_of", "counts", "members"]}},
                                                              "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read, 404)},
            params=[path("name")] + [{"name": n, "in": "query", "required": False, "schema": {"type": "integer"}}
                                     for n in ["window_days", "excited", "active", "inert", "since_days", "month", "percent", "days"]]
                   + [{"name": "bands", "in": "query", "required": False, "schema": {"type": "string"}},
                      {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/segments/{name}/coupons": {"post": op("Issue a coupon of the programme's templates to a segment's members (once a day)", {
            "201": {"description": "coupons issued", "content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*read, 404)},
            body={"type": "object", "required": ["template"], "properties": {"template": {"type": "string"}}},
            params=[path("name")], secure=True)},
        "/v1/exceptions/{id}/resolve": {"post": op("Resolve an exception: a note, and optionally points given or taken for its member", {
            "201": {"description": "the exception, resolved", "content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*read, 404)},
            body={"type": "object", "required": ["note"], "properties": {"note": {"type": "string"}, "points": {"type": "integer"}}},
            params=[path("id")], secure=True)},
        "/v1/reports/stores": {"get": op("Store operations per day (the till's local day)", {
            "200": {"description": "per store and day", "content": {"application/json": {"schema": {"type": "object", "required": ["days"]}},
                                                                    "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read)},
            params=[{"name": n, "in": "query", "required": False, "schema": {"type": "string", "format": "date"}} for n in ["from", "to"]]
                   + [{"name": "store", "in": "query", "required": False, "schema": {"type": "string"}},
                      {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/breakage": {"get": op("Balances no movement has touched for untouched_days days (breakage candidates)", {
            "200": {"description": "members", "content": {"application/json": {"schema": {"type": "object", "required": ["untouched_days", "total", "members"]}},
                                                          "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read)},
            params=[{"name": "untouched_days", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 36500}},
                    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/settlement": {"get": op("Inter-store settlement for a period (the open one by default)", {
            "200": {"description": "the settlement", "content": {"application/json": {"schema": {"type": "object", "required": ["period", "after", "through", "closed", "pairs", "stores"]}},
                                                                "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read, 404)},
            params=[{"name": "period", "in": "query", "required": False, "schema": {"type": "integer"}},
                    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/settlement/flows": {"get": op("The flows behind a settlement period's numbers: which load paid for which spend", {
            "200": {"description": "the flows, oldest first", "content": {"application/json": {"schema": {
                "type": "object", "required": ["period", "flows", "more"],
                "properties": {"period": {"type": "integer"}, "more": {"type": "boolean"}, "flows": {"type": "array", "items": {
                    "type": "object", "required": ["version", "currency", "issuer", "spender", "amount", "load", "spend", "member"],
                    "properties": {"version": {"type": "integer"}, "currency": {"enum": ["principal", "bonus"]}, "issuer": {"type": "string"},
                                   "spender": {"type": "string"}, "amount": {"type": "integer"}, "load": {"type": "string"},
                                   "spend": {"type": "string"}, "member": {"type": "string"}}}}}}},
                "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read, 404)},
            params=[{"name": "period", "in": "query", "required": False, "schema": {"type": "integer"}},
                    {"name": "issuer", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "spender", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
                    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/reports/settlement/close": {"post": op("Close the open settlement period at the log's head", {
            "201": {"description": "the closed period", "content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*read)}, secure=True)},
        "/v1/reports/liabilities": {"get": op("Stored value and points the chain owes its members, by issuing store", {
            "200": {"description": "liabilities", "content": {"application/json": {"schema": {"type": "object", "required": ["principal", "bonus", "points", "stores"]}},
                                                              "text/csv": {"schema": {"type": "string"}}}},
            **errors(*read)},
            params=[{"name": "as_of", "in": "query", "required": False, "schema": {"type": "string", "format": "date"}},
                    {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "csv"]}}], secure=True)},
        "/v1/events": {"get": op("Events for other tools, oldest first: ask again with after=next", {
            "200": {"description": "a page of events", "content": {"application/json": {"schema": {
                "type": "object", "required": ["events", "next", "more"],
                "properties": {"events": {"type": "array", "items": {"type": "object", "required": ["id", "type", "at", "data"], "properties": {
                    "id": {"type": "integer"}, "type": {"enum": EVENT_TYPES}, "member": {"type": "string"}, "op": {"type": "string"},
                    "at": {"type": "string"}, "data": {"type": "object"}}}},
                    "next": {"type": "integer"}, "more": {"type": "boolean"}}}}}},
            **errors(*read)},
            params=[{"name": "after", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}},
                    {"name": "type", "in": "query", "required": False, "schema": {"type": "string"}}], secure=True)},
        "/v1/webhooks": {
            "post": op("Register a webhook (only to hosts the hub's operator allows); its secret is shown once", {
                "201": {"description": "the webhook", "content": {"application/json": {"schema": {"type": "object", "required": ["id", "url", "events", "secret"]}}}},
                **errors(*read)}, body=ref("WebhookRequest"), secure=True),
            "get": op("Every webhook, with how far it has got (never its secret)", {
                "200": {"description": "webhooks", "content": {"application/json": {"schema": {"type": "object", "required": ["webhooks"]}}}},
                **errors(*read)}, secure=True),
        },
        "/v1/webhooks/{id}": {"delete": op("Revoke a webhook", {
            "200": {"description": "revoked", "content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*read, 404)},
            params=[path("id")], secure=True)},
        "/v1/webhooks/{id}/deliveries": {"get": op("A webhook's delivery attempts, newest first", {
            "200": {"description": "deliveries", "content": {"application/json": {"schema": {"type": "object", "required": ["deliveries"]}}}},
            **errors(*read, 404)},
            params=[path("id"), {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}], secure=True)},
        "/v1/audit": {"get": op("The audit log", {"200": {"description": "audit", "content": {"application/json": {"schema": {"type": "object"}}}}, **errors(*read)},
                                params=[{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}], secure=True)},
    }
    return paths


def document(title, description, paths, secure):
    comps = components()
    for name, schema in REQUESTS.items():
        comps[name + "Request"] = schema
    doc = {"openapi": "3.1.0", "info": {"title": title, "version": "1", "description": description},
           "paths": paths, "components": {"schemas": comps}}
    if secure:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


def main():
    outputs = {
        "openapi-node.json": document("Tessera node (till API)", "A store node's API for its tills. See README.md and protocol/spec.md.",
                                      node_api(), False),
        "openapi-hub.json": document("Tessera hub (sync and head-office API)", "The hub's sync protocol (store tokens) and head-office API (head-office tokens). See protocol/spec.md.",
                                     hub_api(), True),
    }
    stale = []
    for name, doc in outputs.items():
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        target = here / name
        if "--check" in sys.argv:
            if not target.exists() or target.read_text() != text:
                stale.append(name)
        else:
            target.write_text(text)
    if stale:
        print(f"make_openapi: {', '.join(stale)} out of date; run protocol/make_openapi.py")
        sys.exit(1)


if __name__ == "__main__":
    main()
