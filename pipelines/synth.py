"""DVC stage `synth`: see `stylesync synth --help`."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["synth", *sys.argv[1:]]))
