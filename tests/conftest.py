"""How the suite is scheduled on `make test`'s two pytest-xdist workers.

Modules with tests marked `slow` (end-to-end: exports, QAT, multi-replica
training, up to two minutes each) run first, so that both workers start on long
tests and the short ones fill in at the end instead of one long test running
alone. Tests keep their order within a module, so a module-scoped fixture is not
torn down and rebuilt between them; tests that share an expensive module fixture
carry an `xdist_group` mark, which `--dist loadgroup` keeps on one worker so the
fixture is built once. `pytest -m "not slow"` runs the quick tests only.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_modules = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow_modules)  # stable: order kept otherwise
