"""What every room uses and none owns, at the import paths the toolkit has always used: atomic output
files (files.py), native libraries' stderr (native_log.py), the command lines' exit codes and `--json
[FILE]` (cli.py). Each lives in `ksac_runtime` (the runtime's command follows the same rules); these
modules name the same objects. No TensorFlow here."""
