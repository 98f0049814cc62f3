"""Structured key=value logging for every kubelab daemon."""
from __future__ import annotations

import logging
import sys


def setup(component: str, verbosity: int = 0) -> None:
    level = logging.DEBUG if verbosity >= 4 else logging.INFO
    logging.basicConfig(stream=sys.stderr, level=level,
                        format=f"ts=%(asctime)s level=%(levelname)s component={component} "
                               f"logger=%(name)s msg=%(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
