"""DVC stage `preprocess`: see `stylesync preprocess --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["preprocess", *sys.argv[1:]]))
