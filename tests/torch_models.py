"""Small PyTorch classifiers for the export tests (importable as MODULE:CALLABLE)."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class SharedActivation(nn.Module):
    """One ReLU module used after both convolutions, as EfficientNet-Lite shares `_swish`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.act = nn.ReLU6()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(12 * 8 * 8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv2(self.act(self.conv1(x)))))


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return SmallNet()


def shared_activation() -> nn.Module:
    torch.manual_seed(1)
    return SharedActivation()


class DataDependent(nn.Module):
    """A branch on a tensor's value: torch.export cannot trace it, TorchScript tracing can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if x.mean() > -1e6:          # always true, but decided by the data
            x = torch.relu(x)
        return self.fc(x.mean(dim=(2, 3)))


def data_dependent() -> nn.Module:
    torch.manual_seed(2)
    return DataDependent()
