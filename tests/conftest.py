"""Shared pytest configuration. Fixture modules of each area are registered here."""

from __future__ import annotations

import os

pytest_plugins = ["tests.postgres"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
