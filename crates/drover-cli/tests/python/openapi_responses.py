"""Check the daemon's JSON answers against docs/openapi.yaml, strictly.

Usage: openapi_responses.py OPENAPI_YAML HTTP_SOCK AGENT_ID

Over the daemon's HTTP unix socket (file permission is the credential): spawn, list, get,
logs, wait, health, session, pause of an ended agent (an error), an unknown agent (an error).
Each JSON body must match the schema the document gives for that route and status, with
OpenAPI 3.0 semantics (`nullable`), and strictly: an object whose schema lists `properties`
may carry no other field, so a field the daemon sends that the document lacks fails too.
AGENT_ID is an agent that has ended, with output. Exit 0 when every answer matches; else 1,
naming each mismatch.
"""

import copy
import http.client
import json
import socket
import sys

from openapi_schema_validator import OAS30Validator
from openapi_spec_validator.readers import read_from_filename


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def resolve(spec, node):
    """`node` with every `$ref` replaced by what it names, recursively."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(spec, target)
        return {k: resolve(spec, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(spec, v) for v in node]
    return node


def strict(schema):
    """No field beyond the listed `properties`, wherever an object lists them."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


def main():
    spec, _ = read_from_filename(sys.argv[1])
    sock, agent = sys.argv[2], sys.argv[3]
    checks = [
        ("POST", "/v1/agents", {"spec": {"argv": ["true"]}}, 201),
        ("GET", "/v1/agents", None, 200),
        ("GET", "/v1/agents?specs=true", None, 200),
        ("GET", f"/v1/agents/{agent}", None, 200),
        ("GET", f"/v1/agents/{agent}/logs?tail=5", None, 200),
        ("GET", f"/v1/agents/{agent}/wait", None, 200),
        ("GET", "/v1/health", None, 200),
        ("GET", "/v1/session", None, 200),
        ("POST", f"/v1/agents/{agent}/pause", None, 409),
        ("GET", "/v1/agents/no-such-agent", None, 404),
    ]
    failures = []
    for method, path, body, expected in checks:
        route = path.split("?")[0].replace(agent, "{agent}").replace("no-such-agent", "{agent}")
        connection = UnixConnection(sock)
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        if response.status != expected:
            failures.append(f"{method} {path}: {response.status}, expected {expected}: {raw[:200]!r}")
            continue
        operation = spec["paths"][route][method.lower()]
        answers = operation["responses"]
        answer = resolve(spec, answers.get(str(expected)) or answers["default"])
        schema = answer["content"]["application/json"]["schema"]
        validator = OAS30Validator(strict(schema))
        for error in validator.iter_errors(json.loads(raw)):
            where = "/".join(str(p) for p in error.absolute_path)
            failures.append(f"{method} {path} ({expected}) at /{where}: {error.message}")
    for failure in failures:
        print(failure)
    if failures:
        sys.exit(1)
    print(f"{len(checks)} answers match docs/openapi.yaml")


if __name__ == "__main__":
    main()
