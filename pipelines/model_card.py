"""DVC stage `model_card`: parameter counts and FLOPs of the configured models -> metrics/model.json."""
import sys

from stylesync.cli import main

sys.exit(main(["model-card", *sys.argv[1:]]))
