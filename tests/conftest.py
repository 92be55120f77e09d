"""How the suite is scheduled on `make test`'s two pytest-xdist workers.

Tests marked `slow` (end-to-end: exports, QAT, multi-replica training, up to two
minutes each) run first, so that both workers start on long tests and the short
ones fill in at the end instead of one long test running alone. Tests that share
an expensive module fixture carry an `xdist_group` mark, which `--dist loadgroup`
keeps on one worker, in order, so the fixture is built once.
`pytest -m "not slow"` runs the quick tests only.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first, order kept
