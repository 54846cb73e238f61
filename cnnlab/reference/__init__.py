"""A second, independent CNN engine in NumPy alone.

Every layer is written out with its forward and backward side by side (:mod:`.functional`), layers and
networks keep torch's parameter names so a torch ``state_dict`` loads by name (:mod:`.nn`), and
:mod:`.train` trains LeNet-5 on MNIST with nothing but NumPy. Nothing in this package imports torch.
"""

from . import functional, nn, optim

__all__ = ["functional", "nn", "optim"]
