"""The Theano tutorial's layers (logistic_sgd.py, mlp.py, convolutional_mlp.py), on symcnn.

The constructor signatures, attribute names and initialisation are the tutorial's, so code
written against `from logistic_sgd import LogisticRegression` etc. works unchanged:

* `LogisticRegression(input, n_in, n_out)`: W, b zeros; p_y_given_x, y_pred, params, input;
* `HiddenLayer(rng, input, n_in, n_out, W=None, b=None, activation=T.tanh)`;
* `MLP(rng, input, n_in, n_hidden, n_out)`;
* `LeNetConvPoolLayer(rng, input, filter_shape, image_shape, poolsize=(2, 2))`;

plus `build_lenet5`, the network of `evaluate_lenet5` in one call.
"""
from collections import namedtuple

import numpy

from . import tensor as T
from .compile.shared import shared
from .config import config
from .tensor.nnet import conv2d
from .tensor.signal import pool

__all__ = ["LogisticRegression", "HiddenLayer", "MLP", "LeNetConvPoolLayer", "LeNet5", "build_lenet5"]


class LogisticRegression(object):
    """Multi-class logistic regression: softmax(x W + b).

    W is (n_in, n_out), b is (n_out,), both initialised with zeros.
    """

    def __init__(self, input, n_in, n_out):
        self.W = shared(value=numpy.zeros((n_in, n_out), dtype=config.floatX), name='W', borrow=True)
        self.b = shared(value=numpy.zeros((n_out,), dtype=config.floatX), name='b', borrow=True)
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]
        self.input = input

    def negative_log_likelihood(self, y):
        """Mean negative log-likelihood of the correct labels y over the minibatch."""
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        """Fraction of the minibatch misclassified (the zero-one loss)."""
        if y.ndim != self.y_pred.ndim:
            raise TypeError('y should have the same shape as self.y_pred',
                            ('y', y.type, 'y_pred', self.y_pred.type))
        if y.dtype.startswith('int'):
            return T.mean(T.neq(self.y_pred, y))
        else:
            raise NotImplementedError()


class HiddenLayer(object):
    """Fully connected layer: activation(x W + b).

    W is uniform in +-sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010), times 4 for the
    sigmoid; b is zeros. Pass W and b (shared variables) to share parameters.
    """

    def __init__(self, rng, input, n_in, n_out, W=None, b=None, activation=T.tanh):
        self.input = input
        if W is None:
            W_values = numpy.asarray(
                rng.uniform(
                    low=-numpy.sqrt(6. / (n_in + n_out)),
                    high=numpy.sqrt(6. / (n_in + n_out)),
                    size=(n_in, n_out)
                ),
                dtype=config.floatX
            )
            if activation == T.nnet.sigmoid:
                W_values *= 4
            W = shared(value=W_values, name='W', borrow=True)
        if b is None:
            b_values = numpy.zeros((n_out,), dtype=config.floatX)
            b = shared(value=b_values, name='b', borrow=True)
        self.W = W
        self.b = b
        lin_output = T.dot(input, self.W) + self.b
        self.output = (
            lin_output if activation is None
            else activation(lin_output)
        )
        self.params = [self.W, self.b]


class MLP(object):
    """One tanh hidden layer followed by a logistic regression layer."""

    def __init__(self, rng, input, n_in, n_hidden, n_out):
        self.hiddenLayer = HiddenLayer(
            rng=rng,
            input=input,
            n_in=n_in,
            n_out=n_hidden,
            activation=T.tanh
        )
        self.logRegressionLayer = LogisticRegression(
            input=self.hiddenLayer.output,
            n_in=n_hidden,
            n_out=n_out
        )
        self.L1 = (
            abs(self.hiddenLayer.W).sum()
            + abs(self.logRegressionLayer.W).sum()
        )
        self.L2_sqr = (
            (self.hiddenLayer.W ** 2).sum()
            + (self.logRegressionLayer.W ** 2).sum()
        )
        self.negative_log_likelihood = (
            self.logRegressionLayer.negative_log_likelihood
        )
        self.errors = self.logRegressionLayer.errors
        self.params = self.hiddenLayer.params + self.logRegressionLayer.params
        self.input = input


class LeNetConvPoolLayer(object):
    """Convolution ('valid', flipped kernels) + max pooling + tanh(. + b), as in the tutorial.

    filter_shape: (number of filters, num input feature maps, filter height, filter width)
    image_shape: (batch size, num input feature maps, image height, image width)
    poolsize: the downsampling (pooling) factor (#rows, #cols)
    """

    def __init__(self, rng, input, filter_shape, image_shape, poolsize=(2, 2)):
        assert image_shape[1] == filter_shape[1]
        self.input = input

        # there are "num input feature maps * filter height * filter width" inputs to each hidden unit
        fan_in = numpy.prod(filter_shape[1:])
        # each unit in the lower layer receives a gradient from:
        # "num output feature maps * filter height * filter width" / pooling size
        fan_out = (filter_shape[0] * numpy.prod(filter_shape[2:]) //
                   numpy.prod(poolsize))
        W_bound = numpy.sqrt(6. / (fan_in + fan_out))
        self.W = shared(
            numpy.asarray(
                rng.uniform(low=-W_bound, high=W_bound, size=filter_shape),
                dtype=config.floatX
            ),
            borrow=True
        )
        b_values = numpy.zeros((filter_shape[0],), dtype=config.floatX)
        self.b = shared(value=b_values, borrow=True)

        conv_out = conv2d(
            input=input,
            filters=self.W,
            filter_shape=filter_shape,
            input_shape=image_shape
        )
        pooled_out = pool.pool_2d(
            input=conv_out,
            ws=poolsize,
            ignore_border=True
        )
        self.output = T.tanh(pooled_out + self.b.dimshuffle('x', 0, 'x', 'x'))
        self.params = [self.W, self.b]


LeNet5 = namedtuple("LeNet5", ["layers", "params", "negative_log_likelihood", "errors", "y_pred", "input"])
LeNet5.__doc__ = """The network of the tutorial's evaluate_lenet5, as returned by build_lenet5.

layers: [layer0, layer1, layer2, layer3] (conv-pool, conv-pool, HiddenLayer, LogisticRegression);
params: layer3.params + layer2.params + layer1.params + layer0.params (the tutorial's order);
negative_log_likelihood(y), errors(y): layer3's cost and zero-one loss; y_pred: layer3.y_pred;
input: the x given to build_lenet5 (a (batch_size, 784) matrix)."""


def build_lenet5(rng, x, batch_size, nkerns=(20, 50)):
    """Build the tutorial's LeNet-5 on x, a (batch_size, 28*28) matrix, exactly as evaluate_lenet5.

    Draws layer0 W, layer1 W and layer2 W from `rng` in that order (layer3 starts at zero).
    The cost is ``model.negative_log_likelihood(y)``.
    """
    nkerns = list(nkerns)
    if len(nkerns) != 2:
        raise ValueError(f"nkerns must be two ints (kernels in the two conv layers), got {nkerns!r}")
    # (batch_size, 28 * 28) -> 4D tensor compatible with our LeNetConvPoolLayer
    layer0_input = x.reshape((batch_size, 1, 28, 28))
    # filtering: (28-5+1, 28-5+1) = (24, 24); maxpooling: (24/2, 24/2) = (12, 12)
    layer0 = LeNetConvPoolLayer(
        rng,
        input=layer0_input,
        image_shape=(batch_size, 1, 28, 28),
        filter_shape=(nkerns[0], 1, 5, 5),
        poolsize=(2, 2)
    )
    # filtering: (12-5+1, 12-5+1) = (8, 8); maxpooling: (8/2, 8/2) = (4, 4)
    layer1 = LeNetConvPoolLayer(
        rng,
        input=layer0.output,
        image_shape=(batch_size, nkerns[0], 12, 12),
        filter_shape=(nkerns[1], nkerns[0], 5, 5),
        poolsize=(2, 2)
    )
    # (batch_size, nkerns[1], 4, 4) -> (batch_size, nkerns[1] * 4 * 4)
    layer2_input = layer1.output.flatten(2)
    layer2 = HiddenLayer(
        rng,
        input=layer2_input,
        n_in=nkerns[1] * 4 * 4,
        n_out=500,
        activation=T.tanh
    )
    layer3 = LogisticRegression(input=layer2.output, n_in=500, n_out=10)
    params = layer3.params + layer2.params + layer1.params + layer0.params
    return LeNet5([layer0, layer1, layer2, layer3], params, layer3.negative_log_likelihood, layer3.errors,
                  layer3.y_pred, x)
