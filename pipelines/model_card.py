"""DVC stage `model_card`: parameter counts and FLOPs of the configured models -> metrics/model.json."""
import sys

from stylesync.cli import main

if __name__ == "__main__":  # process pools may re-import this file (spawn/forkserver)
    sys.exit(main(["model-card", *sys.argv[1:]]))
