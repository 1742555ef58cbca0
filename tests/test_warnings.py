"""The suite's warning filters (pyproject.toml): a DeprecationWarning raised from interp's own
code fails the test that raised it; an upstream one is let through only by a filter naming its
module, never all at once."""

import pytest


def warn_from(module: str) -> None:
    """Raise a DeprecationWarning as code of `module` does (`warnings.warn` names the module
    by the caller's `__name__`, which the filters match)."""
    code = compile("import warnings\nwarnings.warn('old', DeprecationWarning)", module, "exec")
    exec(code, {"__name__": module})


@pytest.mark.parametrize("module", ["interp", "interp.store", "interp.report.page"])
def test_a_deprecation_warning_from_interp_fails_the_test(module):
    with pytest.raises(DeprecationWarning, match="old"):
        warn_from(module)


def test_upstream_deprecation_warnings_are_ignored_by_module_only(pytestconfig):
    filters = pytestconfig.getini("filterwarnings")
    assert "error::DeprecationWarning" in filters
    for line in filters:
        action, _message, category, module, *_ = line.split(":") + ["", "", "", ""]
        if action == "ignore" and category in ("", "DeprecationWarning"):
            assert module and not module.startswith("interp"), line
    with pytest.raises(DeprecationWarning):
        warn_from("some_other_package.module")
