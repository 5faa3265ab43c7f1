"""Print deployment manifests as one JSON object, {path: parsed}, for tests/deploy_manifests.rs.

YAML files (every document in each) are read with PyYAML, `.hcl` files with python-hcl2, the
parser the Nomad job is validated with. Strings come out as their values (no HCL quotes), blocks
as lists of dicts keyed by their labels, without comments.
"""

import json
import sys

import hcl2
import yaml


def parse(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".hcl"):
            options = hcl2.SerializationOptions(
                strip_string_quotes=True, with_comments=False, explicit_blocks=False
            )
            return hcl2.load(f, serialization_options=options)
        return list(yaml.safe_load_all(f))


json.dump({path: parse(path) for path in sys.argv[1:]}, sys.stdout)
