"""The one Accelerate training loop, the inference loop, and their batching."""
