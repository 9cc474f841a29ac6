"""Plausible student networks for calibrating the sample-quality bars, each written independently of the
reference and of the others (they are correct Level 1 answers: instructor-only, never in a student release)."""

ZOO_MODELS = {  # file in this folder -> what a student wrote
    "plain_unet": "a plain two-resolution UNet (32, 64 channels), residual blocks, no attention",
    "convnet": "a ConvNet without skip connections (one down- and up-sampling, 64/96 channels)",
    "attention_unet": "a wider three-resolution UNet with self-attention at the lowest resolution",
    "three_level_unet": "a plain three-resolution UNet (32, 64, 128 channels), concatenated skips, no attention",
    "tiny_unet": "a tiny two-resolution UNet (32, 64 channels, 0.15 M parameters), added skips",
}
