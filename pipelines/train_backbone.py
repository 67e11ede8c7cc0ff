"""DVC stage `train_backbone`: see `stylesync train --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
