"""DVC stage `evaluate`: see `stylesync evaluate --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["evaluate", *sys.argv[1:]]))
