"""tailguard.lazy: package attributes imported on first use."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from tailguard.lazy import lazy_getattr


def test_an_attribute_loads_from_its_home_on_first_use_and_stays() -> None:
    package = types.ModuleType("tg_lazy_pkg")
    sys.modules[package.__name__] = package
    try:
        package.__getattr__ = lazy_getattr(package.__name__,
                                           {"dumps": "json", "missing": "json"})
        import json

        assert package.dumps is json.dumps
        assert package.__dict__["dumps"] is json.dumps  # kept: no second lookup
        with pytest.raises(AttributeError, match="no attribute 'loads'"):
            package.loads  # noqa: B018 - not listed: a plain AttributeError
        with pytest.raises(AttributeError):
            package.missing  # noqa: B018 - listed, but its home has no such name
    finally:
        del sys.modules[package.__name__]


def test_the_lazy_packages_defer_their_heavy_names() -> None:
    code = (
        "import sys, tailguard.autoscale, tailguard.data, tailguard.train\n"
        "print(sorted(m for m in ('torch', 'tailguard.autoscale.controller') "
        "if m in sys.modules))\n"
        "from tailguard.autoscale import AutoscaleController, BoundsConfig\n"
        "from tailguard.train import LocalEngine\n"
        "from tailguard.data import StreamingDataset\n"
        "print(AutoscaleController.__module__, BoundsConfig.__name__, LocalEngine.__name__, "
        "StreamingDataset.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == ("tailguard.autoscale.controller BoundsConfig LocalEngine "
                      "StreamingDataset")
