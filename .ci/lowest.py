"""Prints the lowest versions that pyproject.toml's ``>=`` ranges allow, as ``name==version`` lines.

CI installs the project under these pins to prove each range true at its lower end. torch is left
out: the CI machine has one local CPU build (2.13.0), and any other version is a multi-GB CUDA
download.

Usage: python .ci/lowest.py [EXTRA ...]   (the extras whose requirements are pinned too)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

SKIP = {"torch"}


def main(extras: list[str]) -> None:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        # An environment marker stays with its pin (pip reads markers in constraints files):
        # "reasoning-gym>=0.1.14; python_version >= '3.11'" -> "reasoning-gym==0.1.14; python_version >= '3.11'".
        spec, _, marker = requirement.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,\s]*)", spec.strip())
        if match and match.group(1).lower() not in SKIP:
            print(f"{match.group(1)}=={match.group(3)}" + (f"; {marker.strip()}" if marker.strip() else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
