"""Optimizer wrappers of the plugin, registered in mmaction's registry."""
from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper

__all__ = ['CPUAmpOptimWrapper']
