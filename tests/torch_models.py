"""Small PyTorch classifiers for the export tests (importable as MODULE:CALLABLE)."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, bands: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(bands, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16, classes)

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


def xray_net() -> nn.Module:
    """One grey band in, 14 independent findings out (logits; a sigmoid each)."""
    torch.manual_seed(2)
    return SmallNet(bands=1, classes=14)


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
        if x.mean() > -1e6:  # always true, but decided by the data
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

    def __init__(
        self,
        registers: int = 0,
        dim: int = 16,
        classes: int = 5,
        size: int = 32,
        patch: int = 8,
        depth: int = 2,
        heads: int = 2,
    ) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.register_tokens = (
            nn.Parameter(torch.randn(1, registers, dim) * 0.5) if (registers) else None
        )
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


class QKNormAttention(nn.Module):
    """Attention with LayerNorms on the per-head queries and keys (N×heads×L×d), as timm's
    qk_norm ViTs and DINOv3 have: an attention-internal 4-D tensor that is no feature map."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(dim // heads)
        self.k_norm = nn.LayerNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = torch.softmax(q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, length, dim))


class QKNormBlock(Block):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__(dim, heads)
        self.attn = QKNormAttention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def qk_norm_vit() -> nn.Module:
    torch.manual_seed(7)
    model = TinyViT()
    model.blocks = nn.Sequential(QKNormBlock(16), QKNormBlock(16))
    return model


class TokenMixer(nn.Module):
    """A patch embedding, then token layers with no norm at all: its only 4-D output is the
    patch embedding, which is no target."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 8, stride=8)
        self.mix = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.patch(x).flatten(2).transpose(1, 2)).mean(dim=1))


def token_mixer() -> nn.Module:
    torch.manual_seed(8)
    return TokenMixer()


class MixedLayouts(nn.Module):
    """NCHW convolutions, then an NHWC stage, ending on N×16×16×16 at a 32×32 input: a shape
    that reads both ways, in a model that has maps of both layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.stage = nn.Sequential(
            nn.LayerNorm(16), nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 16)
        )
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.stage(self.conv2(self.conv1(x)).permute(0, 2, 3, 1))
        return self.head(grid.mean(dim=(1, 2)))


def mixed_layouts() -> nn.Module:
    torch.manual_seed(9)
    return MixedLayouts()


class TimmLike(SmallNet):
    """A small CNN carrying a timm-style `pretrained_cfg` (the values timm publishes for
    vit_small_patch16_224.augreg_in21k_ft_in1k, at a 32×32 size) and `num_classes`."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(16, classes)
        self.num_classes = classes
        self.pretrained_cfg = {
            "input_size": (3, 32, 32),
            "interpolation": "bicubic",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "crop_pct": 0.9,
            "crop_mode": "center",
            "num_classes": classes,
        }


def timm_like(classes: int = 5) -> nn.Module:
    torch.manual_seed(10)
    return TimmLike(classes)


def raising_builder(model_name: str = "nope") -> nn.Module:
    """Fails as timm.create_model does for an unknown name."""
    raise RuntimeError(f"Unknown model ({model_name})")


class TupleOutput(SmallNet):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        out = super().forward(x)
        return out, out


def tuple_output() -> nn.Module:
    torch.manual_seed(11)
    return TupleOutput()


class BatchNormAct(nn.Module):
    """timm's BatchNormAct2d: a norm, an identity dropout, then an in-place activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.drop = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(self.bn(x)))


class InplaceHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.bn2 = BatchNormAct(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn2(self.conv(x)).mean(dim=(2, 3)))


def inplace_head() -> nn.Module:
    torch.manual_seed(12)
    return InplaceHead().eval()


class ResidualBlock(nn.Module):
    """torchvision's CNBlock and Bottleneck end: a branch, then `+=` of the input in place."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.scale = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.scale(self.conv(x))
        out += x
        return out


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.block = ResidualBlock(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.block(self.stem(x)).mean(dim=(2, 3)))


def residual_net() -> nn.Module:
    torch.manual_seed(13)
    return ResidualNet().eval()
