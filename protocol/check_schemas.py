#!/usr/bin/env python3
"""Validates the protocol vectors, example messages and example programmes against the JSON Schemas.

Run by scripts/test after the Swift suite. Needs the `jsonschema` package; says so and exits 0
when it is missing, so the Swift suite stays the gate.
"""
import json
import pathlib
import sys

try:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
except ImportError:
    print("check_schemas: jsonschema not installed; skipped")
    sys.exit(0)

here = pathlib.Path(__file__).parent
schemas = {p.name: json.loads(p.read_text()) for p in (here / "schemas").glob("*.json")}
registry = Registry().with_resources(
    [(s["$id"], Resource.from_contents(s)) for s in schemas.values()]
    + [(name, Resource.from_contents(s)) for name, s in schemas.items()])

def validator(name):
    return Draft202012Validator(schemas[name], registry=registry)

failures = 0
checked = 0
for path in sorted((here / "vectors").glob("*.json")):
    for error in validator("vector.schema.json").iter_errors(json.loads(path.read_text())):
        print(f"{path.name}: {error.json_path}: {error.message}")
        failures += 1
    checked += 1
for path in sorted((here / "examples").glob("*.json")):
    schema = path.name.split(".")[0] + ".schema.json"
    for error in validator(schema).iter_errors(json.loads(path.read_text())):
        print(f"{path.name}: {error.json_path}: {error.message}")
        failures += 1
    checked += 1
for path in sorted((here.parent / "deploy" / "examples").glob("*.json")):
    for error in validator("programme.schema.json").iter_errors(json.loads(path.read_text())):
        print(f"{path.name}: {error.json_path}: {error.message}")
        failures += 1
    checked += 1
print(f"check_schemas: {checked} documents, {failures} problems")
sys.exit(1 if failures else 0)
