"""DVC stage `manifest`: see `stylesync manifest --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["manifest", *sys.argv[1:]]))
