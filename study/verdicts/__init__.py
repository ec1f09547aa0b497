"""The verdicts: pure pandas, scipy and statsmodels over the study folder's tables, never a twin.

`inputs` reads and validates the tables, `common` holds what the verdicts share, one module per
verdict (`degradation`, `agreement`, `lesion`, `norm_preservation`, `relu_skip`), `analyze` all of them.
"""
