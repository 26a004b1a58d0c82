"""Network study (DESIGN §8): a checksummed study package, aggregate-only site results, pooling.

- ``package``: build and verify the study package (manifest with versions, parameters and sha256 of every file).
- ``lifetable`` / ``meta``: the pooling math (Kaplan-Meier from summed life tables, inverse-variance
  meta-analysis of hazard ratios).
- ``suppress``: small-cell suppression, including values that would reveal a suppressed count.
- ``results``: the aggregate result format (a zip of CSV files plus a manifest) and its privacy scan.
- ``site``: run a package against a site's CDM; ``pool``: combine site results into pooled tables, plots
  and a report.
"""
