"""DVC stage `render`: see `stylesync render --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["render", *sys.argv[1:]]))
