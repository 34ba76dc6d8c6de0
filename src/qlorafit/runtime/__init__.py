"""The training runtime: 4-bit model, loss, loop, guard, checkpoints. Imports torch."""
