"""The CAM family on plain arrays: Score-CAM's presets and batched masked-forward loop, its
gradient-free relatives, the tail-graph methods and the fused masked scorer."""
