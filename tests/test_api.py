"""The public API: a short list, every name importable, lazily (no torch at import)."""

import subprocess
import sys

import interp


def test_all_names_resolve_and_match_the_export_table():
    assert sorted(interp.__all__) == sorted(interp._EXPORTS)
    for name in interp.__all__:
        assert getattr(interp, name) is not None, name


def test_importing_interp_does_not_import_torch():
    code = "import sys, interp; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
