"""Shared fixtures: the examples on the import path, and a real NATS server for the replica's
tests (`just test` starts one and exports its settings; run alone, they are skipped unless
ORBIT_SDK_REQUIRE_NATS=1 says a server must be there)."""

import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "sdk/python/examples"))
sys.path.insert(0, str(ROOT / "functions/anomaly"))


@pytest.fixture
def nats_env(monkeypatch):
    """The test NATS server's URL, with the administrator's credentials as the replica's."""
    url = os.environ.get("ORBIT_NATS_URL")
    user = os.environ.get("ORBIT_NATS_ADMIN_USER")
    password = os.environ.get("ORBIT_NATS_ADMIN_PASSWORD")
    if not (url and user and password):
        if os.environ.get("ORBIT_SDK_REQUIRE_NATS") == "1":
            pytest.fail("ORBIT_NATS_URL and the admin credentials must be set (source .orbit/test/env)")
        pytest.skip("no NATS server configured (source .orbit/test/env)")
    monkeypatch.setenv("ORBIT_NATS_USER", user)
    monkeypatch.setenv("ORBIT_NATS_PASSWORD", password)
    monkeypatch.delenv("ORBIT_METRICS_ADDR", raising=False)
    return url
