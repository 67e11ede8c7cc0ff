"""stylesync: open, reproducible, cluster-scale StyleSync (CVPR 2023) lip sync."""
__version__ = "0.1.0"
