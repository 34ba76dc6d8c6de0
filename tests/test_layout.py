"""The layout promise: everything under qlorafit.core and qlorafit.doctor imports with torch blocked."""
import pkgutil
import subprocess
import sys

import qlorafit.core
import qlorafit.doctor


def _modules(pkg) -> list[str]:
    return [pkg.__name__] + [f"{pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]


def test_core_and_doctor_import_without_torch():
    names = _modules(qlorafit.core) + _modules(qlorafit.doctor)
    assert "qlorafit.core.estimate" in names and "qlorafit.core.plan" in names
    code = ("import sys, importlib; sys.modules['torch'] = None\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "assert 'transformers' not in sys.modules, 'core pulled in transformers'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
