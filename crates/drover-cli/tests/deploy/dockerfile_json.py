"""Print a Dockerfile as JSON for tests/deploy_docker.rs, parsed by dockerfile-parse (the parser
of OpenShift's and Fedora's image build tools): the base images with the ARG defaults put in,
and the instructions of each stage (comments left out), as {"instruction", "value"}.
"""

import json
import sys

from dockerfile_parse import DockerfileParser

parser = DockerfileParser(path=sys.argv[1])
stages = []
preamble = []
for item in parser.structure:
    if item["instruction"] == "COMMENT":
        continue
    entry = {"instruction": item["instruction"], "value": item["value"]}
    if item["instruction"] == "FROM":
        stages.append([entry])
    elif stages:
        stages[-1].append(entry)
    else:
        preamble.append(entry)
json.dump(
    {"parent_images": parser.parent_images, "preamble": preamble, "stages": stages},
    sys.stdout,
)
