"""The Android demo's Python side: the numpy reference of the app's processing, golden vectors, assets."""
