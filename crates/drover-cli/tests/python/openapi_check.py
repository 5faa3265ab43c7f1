"""Check docs/openapi.yaml: valid OpenAPI, and its routes are exactly the ones the daemon serves.

Usage: openapi_check.py OPENAPI_YAML ROUTER_RS

The served routes are read from the router's source (`.route("PATH", get(..).post(..))` in
crates/drover-daemon/src/http/mod.rs), so a route added there without documentation, or
documented without being served, fails the test. Exit 0 when both hold; else 1, saying why.
"""

import re
import sys

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

METHODS = ("get", "post", "put", "patch", "delete")


def documented(spec):
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def served(source):
    routes = set()
    # Each `.route(` call runs to the next `.route(`, `.layer(` on its own line, or `;`.
    for match in re.finditer(r'\.route\(\s*"([^"]+)",(.*?)(?=\n\s*\.(?:route|layer|merge)\(|;)',
                             source, re.S):
        path, handlers = match.group(1), match.group(2)
        for method in re.findall(r"\b(" + "|".join(METHODS) + r")\(", handlers):
            routes.add((method.upper(), path))
    return routes


def main():
    spec, _ = read_from_filename(sys.argv[1])
    validate(spec)
    with open(sys.argv[2], encoding="utf-8") as f:
        source = f.read()
    docs, code = documented(spec), served(source)
    if not code:
        print("no routes found in", sys.argv[2])
        return 1
    missing = sorted(code - docs)
    extra = sorted(docs - code)
    for method, path in missing:
        print(f"served but not in openapi.yaml: {method} {path}")
    for method, path in extra:
        print(f"in openapi.yaml but not served: {method} {path}")
    if missing or extra:
        return 1
    print(f"valid; {len(code)} routes, all documented")
    return 0


if __name__ == "__main__":
    sys.exit(main())
