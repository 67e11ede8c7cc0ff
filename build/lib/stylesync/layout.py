"""Where every stage reads and writes: one `Layout` built from `params.paths`.

Paths are spelled like their root (a local path or an fsspec URI, '/'-separated); identities become
path-safe folder names (`io.child_path`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import PathsConfig
from .storage import child_path, glob, join


@dataclass(frozen=True)
class Layout:
    paths: PathsConfig

    # ------------------------------------------------------------------ models/
    @property
    def syncnet(self) -> str:
        """The expert SyncNet (train_syncnet's output)."""
        return join(self.paths.models, "syncnet")

    @property
    def backbone(self) -> str:
        """models/backbone: generator/ (the EMA of G) and discriminator/."""
        return join(self.paths.models, "backbone")

    @property
    def generator(self) -> str:
        return join(self.backbone, "generator")

    @property
    def discriminator(self) -> str:
        return join(self.backbone, "discriminator")

    @property
    def personal_root(self) -> str:
        return join(self.paths.models, "personal")

    def personal(self, identity: str) -> str:
        """models/personal/<safe identity>: raises ValueError for an identity with no safe name."""
        return str(child_path(self.personal_root, identity))

    @property
    def catalog(self) -> str:
        return join(self.personal_root, "catalog.parquet")

    # ------------------------------------------------------------------ data/shards
    @property
    def sync_table(self) -> str:  # the sync_check stage's output (beside the shards: DVC outputs may not nest)
        return join(self.paths.data, "sync.parquet")

    @property
    def shard_index(self) -> str:
        return join(self.paths.shards, "index.parquet")

    def shard(self, name: str) -> str:
        """A shard named as in the index (`<split>/shard-NNNNNN.tar`)."""
        return join(self.paths.shards, name)

    def shard_urls(self, split: str, required: bool = True) -> list[str]:
        """All shard tars of a split, sorted (none: an error, or [] when not `required`)."""
        urls = glob(self.paths.shards, f"{split}/shard-*.tar")
        if not urls and required:
            raise FileNotFoundError(f"no shards in {join(self.paths.shards, split)} (run the preprocess stage first)")
        return urls

    # ------------------------------------------------------------------ runs/ and the DVC outputs
    def run(self, name: str) -> str:
        """runs/<name>: training state for resuming."""
        return join(self.paths.runs, name)

    def metrics(self, name: str) -> str:
        return join(self.paths.metrics, name)

    def plots(self, name: str) -> str:
        return join(self.paths.plots, name)

    def reports(self, name: str) -> str:
        return join(self.paths.reports, name)
