"""TFLite export: the KSAC-aware converter, flatbuffer inspection, parity checks, metadata."""
