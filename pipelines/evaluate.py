"""DVC stage `evaluate`: see `stylesync evaluate --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
