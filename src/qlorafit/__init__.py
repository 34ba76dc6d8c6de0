"""qlorafit: QLoRA fine-tuning that does not die of CUDA out of memory.

Importing the package imports nothing heavy: the arithmetic core (estimate, plan, config, doctor rules)
is plain Python, and torch is imported only by the modules that train.
"""

__version__ = "0.1.0"
