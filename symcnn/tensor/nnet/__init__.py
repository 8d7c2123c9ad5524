"""symcnn.tensor.nnet: Theano's neural-network ops (softmax, sigmoid, conv2d)."""
from .basic import Softmax, sigmoid, softmax, softmax_op  # noqa: F401
from .basic import (CrossEntropySoftmax, CrossEntropySoftmaxGrad, LogSoftmax, SoftmaxGrad,  # noqa: F401
                    crossentropy_softmax, crossentropy_softmax_grad, log_softmax, logsoftmax, softmax_grad)
from .conv import conv2d  # noqa: F401
from . import conv  # noqa: F401  (Theano's older `nnet.conv.conv2d` path)
from . import abstract_conv  # noqa: F401
from .crossentropy import binary_crossentropy, categorical_crossentropy  # noqa: F401
from .relu import relu  # noqa: F401
from .softplus import softplus  # noqa: F401,E402
from . import bn  # noqa: F401,E402  (theano.tensor.nnet.bn)
