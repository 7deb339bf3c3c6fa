"""The pydantic schema of an experiment: every default lives here, the validated config is frozen.

One module per section (``data``, ``modality``, ``model``, ``fusion``, ``trainer``, ``evaluation``),
``experiment`` for the whole and its cross-section checks, ``overrides`` for ``--set`` and
``loading`` for reading and messages. Relative paths in a config are resolved against the current
working directory.
"""

from modalign.config.data import DataConfig
from modalign.config.experiment import ExperimentConfig
from modalign.config.loading import load_config
from modalign.config.overrides import apply_override
from modalign.config.trainer import TrainerConfig

__all__ = ["DataConfig", "ExperimentConfig", "TrainerConfig", "apply_override", "load_config"]
