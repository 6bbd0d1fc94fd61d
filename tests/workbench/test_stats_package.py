"""workbench.stats is a package: every name the single module exported is still importable from it."""

import importlib

# The public names of workbench/stats.py before it became a package (its __all__ at commit f8e12ac).
OLD_PUBLIC = ["StatsError", "Estimate", "bootstrap", "wilson", "proportion", "spearman", "kendall_tau_b",
              "cohens_kappa", "auroc", "pass_at_k", "pass_hat_k", "pass_at_k_over_tasks", "pass_hat_k_over_tasks",
              "AdjustedPValues", "holm", "benjamini_hochberg", "adjust_pvalues", "two_proportion_sample_size",
              "two_proportion_power", "detectable_difference", "MIN_BOOTSTRAP_UNITS", "MIN_CORRELATION_UNITS"]


def test_every_old_public_name_imports_from_the_package():
    stats = importlib.import_module("workbench.stats")
    for name in OLD_PUBLIC:
        exec(f"from workbench.stats import {name}", {})
        assert name in stats.__all__, name
    missing = [n for n in stats.__all__ if not hasattr(stats, n)]
    assert missing == []


def test_names_are_the_submodules_objects_not_shadowed_by_modules():
    import types

    import workbench.stats as S
    from workbench.stats import correlation, resampling, roc

    for name in S.__all__:
        assert not isinstance(getattr(S, name), types.ModuleType), name
    assert S.bootstrap is resampling.bootstrap and S.spearman is correlation.spearman and S.auroc is roc.auroc
