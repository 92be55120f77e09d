"""Experiment configs: typed dataclasses with every default in one place, the engine that resolves
them from defaults, YAML files and flags, and the paper's recipes (`configs/paper/*.yaml`).

Modules:
    experiments: the config dataclasses (one per section, grouped per command), each checking its
        own values in `validate()`, and `QUICK_BENCHMARK`; `ModelConfig.build` builds the model.
    engine: `resolve` (layers of nested dicts -> a validated config, with the rates rule), the type
        checks (`from_dict`), `read_file`, `find_config` (a `--config` file or packaged recipe name),
        `write` (`config.yaml`), `--resume`'s rule (`check_resumable`).
    flags: the command-line side: `flag_overrides`, `add_loop_flags`, `document_defaults`.

Import from here: `from configs import ExperimentConfig, resolve`.
"""

from configs.engine import (  # noqa: F401  (the package's public names)
    CONFIG_FILE,
    ConfigError,
    check_resumable,
    differences,
    find_config,
    from_dict,
    get,
    merge,
    read_file,
    read_saved_config,
    recipes,
    resolve,
    to_dict,
    write,
)
from configs.experiments import (  # noqa: F401
    MIXED_PRECISIONS,
    QUICK_BENCHMARK,
    BenchmarkConfig,
    DataConfig,
    ExperimentConfig,
    ExportConfig,
    ModelConfig,
    OptimizerConfig,
    QATConfig,
    QATExperimentConfig,
    ScheduleConfig,
    TrainingConfig,
    build_model_from_config,
)
from configs.flags import add_loop_flags, document_defaults, flag_overrides  # noqa: F401
