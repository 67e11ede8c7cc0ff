"""DVC stage `train_syncnet`: see `stylesync train-syncnet --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["train-syncnet", *sys.argv[1:]]))
