"""Running exported `.tflite` files: the one LiteRT runtime (CPU and GPU) and the one inference preprocessing."""
