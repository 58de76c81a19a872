"""The spec's ``tune:`` section now lives in the spec layer (``generator/spec/tune.py``); kept importable here."""

from .spec.tune import OBJECTIVES, TUNE_KEYS, TuneSettings, parse_tune  # noqa: F401
