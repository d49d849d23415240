"""Labelled text: one reader for every layout, a classifier (N vs 1) and a label-conditioned language model (1 vs N)."""
