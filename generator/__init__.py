"""tritongen: PyTorch checkpoints -> verified variants -> a Triton model repository."""

__version__ = "0.1.0"
