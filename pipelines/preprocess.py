"""DVC stage `preprocess`: see `stylesync preprocess --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["preprocess", *sys.argv[1:]]))
