"""The model description, at its earlier import path: it lives in `ksac_runtime.description` (with its
schema, `ksac_runtime/model_description.schema.json`), the TensorFlow-free package that apps and boards
install (`make runtime-wheel`); these are the same objects, not a copy."""

from ksac_runtime.description import (  # noqa: F401
    DESCRIPTION_VERSION,
    EXPORTERS,
    METADATA_NAME,
    OUTPUT_STRIDES,
    OUTPUTS,
    PRECISIONS,
    SCHEMA_PATH,
    TFLITE_IDENTIFIER,
    ModelDescription,
    Normalization,
    Preprocessing,
    damaged_model_errors,
    description_version,
    metadata_entries,
    model_name,
    read_description,
    read_metadata,
    read_model_bytes,
)
