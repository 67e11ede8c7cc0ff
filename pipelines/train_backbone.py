"""DVC stage `train_backbone`: see `stylesync train --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["train", *sys.argv[1:]]))
