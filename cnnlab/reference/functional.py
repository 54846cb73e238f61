"""Every op of the reference engine in one namespace, named as in ``torch.nn.functional``.

Each op ``f`` has its gradient beside it as ``f_backward`` (see the module that defines it). NumPy only:
nothing here imports torch, so the engine is an independent check of the framework.
"""

from __future__ import annotations

from .activation import (leaky_relu, leaky_relu_backward, log_softmax, relu, relu_backward, sigmoid,
                         sigmoid_backward, softmax, softmax_backward, tanh, tanh_backward)
from .conv import (col2im, conv2d, conv2d_backward, conv2d_im2col, conv2d_input_grad, conv2d_sliding,
                   conv2d_sliding_backward, conv2d_weight_grad, conv_transpose2d,
                   conv_transpose2d_backward, im2col, true_convolution)
from .dense import dropout, dropout_backward, dropout_mask, flatten, flatten_backward, linear, linear_backward
from .loss import (cross_entropy, cross_entropy_backward, l1_loss, l1_loss_backward, mse_loss, mse_loss_backward,
                   multi_margin_loss, multi_margin_loss_backward)
from .norm import batch_norm, batch_norm_backward, local_response_norm, local_response_norm_backward
from .pool import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d, global_avg_pool2d_backward, max_pool2d,
                   max_pool2d_backward)
from .recurrent import (gru_cell, gru_cell_backward, lstm_cell, lstm_cell_backward, rnn_cell, rnn_cell_backward,
                        run_sequence, run_sequence_backward)

__all__ = [name for name in dir() if not name.startswith("_") and name != "annotations"]
