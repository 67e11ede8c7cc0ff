"""The evaluation SyncNet of joonson/syncnet_python (`SyncNetModel.S`), loading `syncnet_v2.model`.

Same Sequential layout (`netcnnaud`, `netfcaud`, `netcnnlip`, `netfclip`) so the official state
dict loads key for key. Inputs as the official evaluation feeds them: video (B, 3, 5, 224, 224)
BGR in 0-255, audio MFCC (B, 1, 13, 20) from 16-bit PCM; outputs 1024-d features (not normalised).
"""
from __future__ import annotations

import torch
from torch import nn


def _audio_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d((1, 1), (1, 1)),
        nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192), nn.ReLU(inplace=True), nn.MaxPool2d((3, 3), (1, 2)),
        nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
        nn.MaxPool2d((3, 3), (2, 2)),
        nn.Conv2d(256, 512, (5, 4), padding=0), nn.BatchNorm2d(512), nn.ReLU(),
    )


def _lip_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU(inplace=True),
    )


def _fc(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetOfficial(nn.Module):
    def __init__(self, feature_dim: int = 1024):
        super().__init__()
        self.netcnnaud = _audio_cnn()
        self.netfcaud = _fc(feature_dim)
        self.netcnnlip = _lip_cnn()
        self.netfclip = _fc(feature_dim)

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) -> (B, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 -> (B, 1024)."""
        return self.netfclip(self.netcnnlip(video).flatten(1))
