"""DVC stage `sync_check`: see `stylesync sync-check --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["sync-check", *sys.argv[1:]]))
