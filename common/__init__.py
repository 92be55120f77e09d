"""What every room uses and none owns: atomic output files, native libraries' stderr, the command lines'
exit codes and `--json [FILE]` (cli.py). No TensorFlow here."""
