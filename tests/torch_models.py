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


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A ViT: by default on 32×32 inputs with 8×8 patches (a 4×4 grid), a class token,
    optional registers, two blocks, a final norm and a head on the class token."""

    def __init__(self, registers: int = 0, dim: int = 16, classes: int = 5, size: int = 32,
                 patch: int = 8, depth: int = 2, heads: int = 2) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.register_tokens = nn.Parameter(torch.randn(1, registers, dim) * 0.5) if (
            registers) else None
        grid = (size // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, 1 + registers + grid, dim) * 0.1)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch(x).flatten(2).transpose(1, 2)
        lead = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.register_tokens is not None:
            lead.append(self.register_tokens.expand(x.shape[0], -1, -1))
        return torch.cat([*lead, patches], dim=1) + self.pos

    def tail(self, tokens: torch.Tensor) -> torch.Tensor:
        """From the output of the last block but one to the logits."""
        return self.head(self.norm(self.blocks[-1](tokens))[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.blocks[:-1](self.tokens(x)))


class SwinLikeStage(nn.Module):
    """Patch embedding, then a stage working on N×h×w×C (as Swin's stages do), a mean over
    the grid and a head."""

    def __init__(self, dim: int = 12, classes: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.stage = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.stage(self.patch(x).permute(0, 2, 3, 1))
        return self.head(grid.mean(dim=(1, 2)))


def tiny_vit() -> nn.Module:
    torch.manual_seed(3)
    return TinyViT()


def tiny_vit_registers() -> nn.Module:
    torch.manual_seed(4)
    return TinyViT(registers=3)


def vit_tiny_16() -> nn.Module:
    """ViT-Ti/16 sized (224×224, 16×16 patches, 192 channels, 12 blocks, 3 heads), random
    weights, 1000 classes: for measurements."""
    torch.manual_seed(6)
    return TinyViT(dim=192, classes=1000, size=224, patch=16, depth=12, heads=3)


def swin_like() -> nn.Module:
    torch.manual_seed(5)
    return SwinLikeStage()
