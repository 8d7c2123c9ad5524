"""The Theano LeNet tutorial, ported by changing the imports only.

(a) A transcription of convolutional_mlp.py / logistic_sgd.py / mlp.py (layers defined here,
    as in the tutorial) trains on a small subset and its cost goes down.
(b) End to end: the tutorial's LeNet-5 (nkerns 20, 50; batch 500; lr 0.1; RandomState(23455))
    on ../shared/data/mnist10k/mnist10k.pkl.gz for 2 epochs reaches < 40 % validation error.
"""
from __future__ import print_function

import gzip
import pickle
import sys
from pathlib import Path

import numpy
import pytest

import symcnn as theano
import symcnn.tensor as T
from symcnn.tensor.nnet import conv2d
from symcnn.tensor.signal import pool

SHARED_PKL = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'mnist10k' / 'mnist10k.pkl.gz'


# ----------------------------------------------------------------------------- logistic_sgd.py

class LogisticRegression(object):
    def __init__(self, input, n_in, n_out):
        self.W = theano.shared(
            value=numpy.zeros(
                (n_in, n_out),
                dtype=theano.config.floatX
            ),
            name='W',
            borrow=True
        )
        self.b = theano.shared(
            value=numpy.zeros(
                (n_out,),
                dtype=theano.config.floatX
            ),
            name='b',
            borrow=True
        )
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]
        self.input = input

    def negative_log_likelihood(self, y):
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        if y.ndim != self.y_pred.ndim:
            raise TypeError(
                'y should have the same shape as self.y_pred',
                ('y', y.type, 'y_pred', self.y_pred.type)
            )
        if y.dtype.startswith('int'):
            return T.mean(T.neq(self.y_pred, y))
        else:
            raise NotImplementedError()


def load_data(dataset):
    ''' Loads the dataset (logistic_sgd.py, minus the download) '''
    print('... loading data')
    with gzip.open(dataset, 'rb') as f:
        try:
            train_set, valid_set, test_set = pickle.load(f, encoding='latin1')
        except TypeError:
            train_set, valid_set, test_set = pickle.load(f)
    return _shared_sets(train_set, valid_set, test_set)


def _shared_sets(train_set, valid_set, test_set):
    def shared_dataset(data_xy, borrow=True):
        data_x, data_y = data_xy
        shared_x = theano.shared(numpy.asarray(data_x,
                                               dtype=theano.config.floatX),
                                 borrow=borrow)
        shared_y = theano.shared(numpy.asarray(data_y,
                                               dtype=theano.config.floatX),
                                 borrow=borrow)
        return shared_x, T.cast(shared_y, 'int32')

    test_set_x, test_set_y = shared_dataset(test_set)
    valid_set_x, valid_set_y = shared_dataset(valid_set)
    train_set_x, train_set_y = shared_dataset(train_set)

    rval = [(train_set_x, train_set_y), (valid_set_x, valid_set_y),
            (test_set_x, test_set_y)]
    return rval


# ----------------------------------------------------------------------------- mlp.py

class HiddenLayer(object):
    def __init__(self, rng, input, n_in, n_out, W=None, b=None,
                 activation=T.tanh):
        self.input = input
        if W is None:
            W_values = numpy.asarray(
                rng.uniform(
                    low=-numpy.sqrt(6. / (n_in + n_out)),
                    high=numpy.sqrt(6. / (n_in + n_out)),
                    size=(n_in, n_out)
                ),
                dtype=theano.config.floatX
            )
            if activation == theano.tensor.nnet.sigmoid:
                W_values *= 4

            W = theano.shared(value=W_values, name='W', borrow=True)

        if b is None:
            b_values = numpy.zeros((n_out,), dtype=theano.config.floatX)
            b = theano.shared(value=b_values, name='b', borrow=True)

        self.W = W
        self.b = b

        lin_output = T.dot(input, self.W) + self.b
        self.output = (
            lin_output if activation is None
            else activation(lin_output)
        )
        self.params = [self.W, self.b]


# ----------------------------------------------------------------------------- convolutional_mlp.py

class LeNetConvPoolLayer(object):
    """Pool Layer of a convolutional network """

    def __init__(self, rng, input, filter_shape, image_shape, poolsize=(2, 2)):
        assert image_shape[1] == filter_shape[1]
        self.input = input

        # there are "num input feature maps * filter height * filter width"
        # inputs to each hidden unit
        fan_in = numpy.prod(filter_shape[1:])
        # each unit in the lower layer receives a gradient from:
        # "num output feature maps * filter height * filter width" /
        #   pooling size
        fan_out = (filter_shape[0] * numpy.prod(filter_shape[2:]) //
                   numpy.prod(poolsize))
        # initialize weights with random weights
        W_bound = numpy.sqrt(6. / (fan_in + fan_out))
        self.W = theano.shared(
            numpy.asarray(
                rng.uniform(low=-W_bound, high=W_bound, size=filter_shape),
                dtype=theano.config.floatX
            ),
            borrow=True
        )

        # the bias is a 1D tensor -- one bias per output feature map
        b_values = numpy.zeros((filter_shape[0],), dtype=theano.config.floatX)
        self.b = theano.shared(value=b_values, borrow=True)

        # convolve input feature maps with filters
        conv_out = conv2d(
            input=input,
            filters=self.W,
            filter_shape=filter_shape,
            input_shape=image_shape
        )

        # pool each feature map individually, using maxpooling
        pooled_out = pool.pool_2d(
            input=conv_out,
            ws=poolsize,
            ignore_border=True
        )

        # add the bias term. Since the bias is a vector (1D array), we first
        # reshape it to a tensor of shape (1, n_filters, 1, 1). Each bias will
        # thus be broadcasted across mini-batches and feature map
        # width & height
        self.output = T.tanh(pooled_out + self.b.dimshuffle('x', 0, 'x', 'x'))

        # store parameters of this layer
        self.params = [self.W, self.b]

        # keep track of model input
        self.input = input


def build_and_compile(datasets, learning_rate, nkerns, batch_size, seed):
    """The model-building part of evaluate_lenet5, verbatim but for the imports."""
    rng = numpy.random.RandomState(seed)

    train_set_x, train_set_y = datasets[0]
    valid_set_x, valid_set_y = datasets[1]
    test_set_x, test_set_y = datasets[2]

    # compute number of minibatches for training, validation and testing
    n_train_batches = train_set_x.get_value(borrow=True).shape[0]
    n_valid_batches = valid_set_x.get_value(borrow=True).shape[0]
    n_test_batches = test_set_x.get_value(borrow=True).shape[0]
    n_train_batches //= batch_size
    n_valid_batches //= batch_size
    n_test_batches //= batch_size

    # allocate symbolic variables for the data
    index = T.lscalar()  # index to a [mini]batch

    # start-snippet-1
    x = T.matrix('x')   # the data is presented as rasterized images
    y = T.ivector('y')  # the labels are presented as 1D vector of
                        # [int] labels

    ######################
    # BUILD ACTUAL MODEL #
    ######################
    print('... building the model')

    # Reshape matrix of rasterized images of shape (batch_size, 28 * 28)
    # to a 4D tensor, compatible with our LeNetConvPoolLayer
    # (28, 28) is the size of MNIST images.
    layer0_input = x.reshape((batch_size, 1, 28, 28))

    # Construct the first convolutional pooling layer:
    # filtering reduces the image size to (28-5+1 , 28-5+1) = (24, 24)
    # maxpooling reduces this further to (24/2, 24/2) = (12, 12)
    # 4D output tensor is thus of shape (batch_size, nkerns[0], 12, 12)
    layer0 = LeNetConvPoolLayer(
        rng,
        input=layer0_input,
        image_shape=(batch_size, 1, 28, 28),
        filter_shape=(nkerns[0], 1, 5, 5),
        poolsize=(2, 2)
    )

    # Construct the second convolutional pooling layer
    # filtering reduces the image size to (12-5+1, 12-5+1) = (8, 8)
    # maxpooling reduces this further to (8/2, 8/2) = (4, 4)
    # 4D output tensor is thus of shape (batch_size, nkerns[1], 4, 4)
    layer1 = LeNetConvPoolLayer(
        rng,
        input=layer0.output,
        image_shape=(batch_size, nkerns[0], 12, 12),
        filter_shape=(nkerns[1], nkerns[0], 5, 5),
        poolsize=(2, 2)
    )

    # the HiddenLayer being fully-connected, it operates on 2D matrices of
    # shape (batch_size, num_pixels) (i.e matrix of rasterized images).
    # This will generate a matrix of shape (batch_size, nkerns[1] * 4 * 4),
    # or (500, 50 * 4 * 4) = (500, 800) with the default values.
    layer2_input = layer1.output.flatten(2)

    # construct a fully-connected sigmoidal layer
    layer2 = HiddenLayer(
        rng,
        input=layer2_input,
        n_in=nkerns[1] * 4 * 4,
        n_out=500,
        activation=T.tanh
    )

    # classify the values of the fully-connected sigmoidal layer
    layer3 = LogisticRegression(input=layer2.output, n_in=500, n_out=10)

    # the cost we minimize during training is the NLL of the model
    cost = layer3.negative_log_likelihood(y)

    # create a function to compute the mistakes that are made by the model
    test_model = theano.function(
        [index],
        layer3.errors(y),
        givens={
            x: test_set_x[index * batch_size: (index + 1) * batch_size],
            y: test_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    validate_model = theano.function(
        [index],
        layer3.errors(y),
        givens={
            x: valid_set_x[index * batch_size: (index + 1) * batch_size],
            y: valid_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    # create a list of all model parameters to be fit by gradient descent
    params = layer3.params + layer2.params + layer1.params + layer0.params

    # create a list of gradients for all model parameters
    grads = T.grad(cost, params)

    # train_model is a function that updates the model parameters by
    # SGD Since this model has many parameters, it would be tedious to
    # manually create an update rule for each model parameter. We thus
    # create the updates list by automatically looping over all
    # (params[i], grads[i]) pairs.
    updates = [
        (param_i, param_i - learning_rate * grad_i)
        for param_i, grad_i in zip(params, grads)
    ]

    train_model = theano.function(
        [index],
        cost,
        updates=updates,
        givens={
            x: train_set_x[index * batch_size: (index + 1) * batch_size],
            y: train_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )
    # end-snippet-1
    return (train_model, validate_model, test_model, n_train_batches, n_valid_batches, n_test_batches,
            [layer0, layer1, layer2, layer3], params)


# ----------------------------------------------------------------------------- (a) small subset

def _small_subset(n_train=400, n_valid=100, n_test=100):
    from symcnn.datasets import load_arrays
    (tx, ty), (vx, vy), (sx, sy) = load_arrays('mnist10k')
    return _shared_sets((tx[:n_train], ty[:n_train]), (vx[:n_valid], vy[:n_valid]), (sx[:n_test], sy[:n_test]))


def test_tutorial_script_trains_on_a_subset():
    datasets = _small_subset()
    (train_model, validate_model, test_model, n_train_batches, n_valid_batches, n_test_batches,
     layers, params) = build_and_compile(datasets, learning_rate=0.1, nkerns=[4, 6], batch_size=50, seed=23455)
    assert (n_train_batches, n_valid_batches, n_test_batches) == (8, 2, 2)
    assert len(params) == 8

    before = numpy.mean([validate_model(i) for i in range(n_valid_batches)])
    costs = []
    for epoch in range(3):
        costs.append([float(train_model(i)) for i in range(n_train_batches)])
    first, last = numpy.mean(costs[0]), numpy.mean(costs[-1])
    # the logistic layer starts at zero: the first cost is exactly log(10)
    assert costs[0][0] == pytest.approx(numpy.log(10), rel=1e-4)
    assert last < first
    assert costs[-1][-1] < costs[0][0]
    after = numpy.mean([validate_model(i) for i in range(n_valid_batches)])
    assert after < before
    err = test_model(0)
    assert numpy.ndim(err) == 0 and 0.0 <= float(err) <= 1.0


# ----------------------------------------------------------------------------- (b) end to end

def test_lenet5_end_to_end_on_mnist10k():
    if not SHARED_PKL.is_file():
        pytest.skip(f'{SHARED_PKL} not present (the shared data folder is outside the repo)')
    datasets = load_data(str(SHARED_PKL))
    (train_model, validate_model, test_model, n_train_batches, n_valid_batches, n_test_batches,
     layers, params) = build_and_compile(datasets, learning_rate=0.1, nkerns=[20, 50], batch_size=500, seed=23455)
    assert (n_train_batches, n_valid_batches, n_test_batches) == (16, 2, 2)
    assert sum(p.get_value(borrow=True).size for p in params) == 431080

    from symcnn.training import early_stopping
    lines = []
    result = early_stopping(train_model, validate_model, test_model, n_train_batches, n_valid_batches,
                            n_test_batches, n_epochs=2, print_fn=lines.append)
    print('\n'.join(lines), file=sys.stderr)
    errors = result.validation_errors
    assert len(errors) == 2 and result.iterations == 32
    assert lines[0] == 'training @ iter = 0'
    assert lines[1].startswith('epoch 1, minibatch 16/16, validation error ')
    assert errors[-1] < 0.40, f'validation errors per epoch: {errors}'
    assert min(errors) < 0.9  # better than chance
    assert 0.0 <= result.test_score < 0.5
