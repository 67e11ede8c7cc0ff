"""DVC stage `synth`: see `stylesync synth --help`."""
import sys

from stylesync.cli import main

sys.exit(main(["synth", *sys.argv[1:]]))
