"""DVC stage `train_syncnet`: see `stylesync train-syncnet --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["train-syncnet", *sys.argv[1:]]))
