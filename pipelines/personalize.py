"""DVC stage `personalize`: see `stylesync personalize --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["personalize", *sys.argv[1:]]))
