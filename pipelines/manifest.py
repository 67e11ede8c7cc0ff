"""DVC stage `manifest`: see `stylesync manifest --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["manifest", *sys.argv[1:]]))
