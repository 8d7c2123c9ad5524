"""This tutorial introduces logistic regression using symcnn and stochastic gradient descent.

A port of the Theano tutorial's logistic_sgd.py (deeplearning.net/tutorial/logreg.html).
Logistic regression is a probabilistic, linear classifier:

.. math::
  P(Y=i|x, W,b) &= softmax_i(W x + b) \\
  y_{pred} &= argmax_i P(Y=i|x,W,b)

    python examples/logistic_sgd.py                 # trains, saves best_model.pkl
    python examples/logistic_sgd.py --epochs 10 --dataset mnist.pkl.gz --save-model logreg.pkl
    python examples/predict.py logreg.pkl --count 20

References:
    - textbooks: "Pattern Recognition and Machine Learning" - Christopher M. Bishop, section 4.3.2
"""
from __future__ import print_function

import argparse
import os
import sys
import timeit

import numpy

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_REPO, "symcnn", "__init__.py")):
    sys.path.insert(0, _REPO)  # run from a checkout: use that checkout's symcnn

import symcnn as theano  # noqa: E402
import symcnn.tensor as T  # noqa: E402
from symcnn.cli import positive_int, writable_file  # noqa: E402
from symcnn.datasets import load_data  # noqa: E402
from symcnn.layers import LogisticRegression  # noqa: E402
from symcnn.training import load_model, save_model  # noqa: E402


def sgd_optimization_mnist(learning_rate=0.13, n_epochs=1000,
                           dataset='mnist10k',
                           batch_size=600, model_path='best_model.pkl'):
    """
    Demonstrate stochastic gradient descent optimization of a log-linear
    model

    This is demonstrated on MNIST.

    :type learning_rate: float
    :param learning_rate: learning rate used (factor for the stochastic
                          gradient)

    :type n_epochs: int
    :param n_epochs: maximal number of epochs to run the optimizer

    :type dataset: string
    :param dataset: 'mnist10k' (embedded), a mnist.pkl.gz-style pickle or a folder of IDX files

    """
    datasets = load_data(dataset)

    train_set_x, train_set_y = datasets[0]
    valid_set_x, valid_set_y = datasets[1]
    test_set_x, test_set_y = datasets[2]

    # compute number of minibatches for training, validation and testing
    n_train_batches = train_set_x.get_value(borrow=True).shape[0] // batch_size
    n_valid_batches = valid_set_x.get_value(borrow=True).shape[0] // batch_size
    n_test_batches = test_set_x.get_value(borrow=True).shape[0] // batch_size

    ######################
    # BUILD ACTUAL MODEL #
    ######################
    print('... building the model')

    # allocate symbolic variables for the data
    index = T.lscalar()  # index to a [mini]batch

    # generate symbolic variables for input (x and y represent a
    # minibatch)
    x = T.matrix('x')  # data, presented as rasterized images
    y = T.ivector('y')  # labels, presented as 1D vector of [int] labels

    # construct the logistic regression class
    # Each MNIST image has size 28*28
    classifier = LogisticRegression(input=x, n_in=28 * 28, n_out=10)

    # the cost we minimize during training is the negative log likelihood of
    # the model in symbolic format
    cost = classifier.negative_log_likelihood(y)

    # compiling a Theano function that computes the mistakes that are made by
    # the model on a minibatch
    test_model = theano.function(
        inputs=[index],
        outputs=classifier.errors(y),
        givens={
            x: test_set_x[index * batch_size: (index + 1) * batch_size],
            y: test_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    validate_model = theano.function(
        inputs=[index],
        outputs=classifier.errors(y),
        givens={
            x: valid_set_x[index * batch_size: (index + 1) * batch_size],
            y: valid_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    # compute the gradient of cost with respect to theta = (W,b)
    g_W = T.grad(cost=cost, wrt=classifier.W)
    g_b = T.grad(cost=cost, wrt=classifier.b)

    # specify how to update the parameters of the model as a list of
    # (variable, update expression) pairs.
    updates = [(classifier.W, classifier.W - learning_rate * g_W),
               (classifier.b, classifier.b - learning_rate * g_b)]

    # compiling a Theano function `train_model` that returns the cost, but in
    # the same time updates the parameter of the model based on the rules
    # defined in `updates`
    train_model = theano.function(
        inputs=[index],
        outputs=cost,
        updates=updates,
        givens={
            x: train_set_x[index * batch_size: (index + 1) * batch_size],
            y: train_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    ###############
    # TRAIN MODEL #
    ###############
    print('... training the model')
    # early-stopping parameters
    patience = 5000  # look as this many examples regardless
    patience_increase = 2  # wait this much longer when a new best is
                                  # found
    improvement_threshold = 0.995  # a relative improvement of this much is
                                  # considered significant
    validation_frequency = min(n_train_batches, patience // 2)
                                  # go through this many
                                  # minibatche before checking the network
                                  # on the validation set; in this case we
                                  # check every epoch

    best_validation_loss = numpy.inf
    test_score = 0.
    start_time = timeit.default_timer()

    done_looping = False
    epoch = 0
    while (epoch < n_epochs) and (not done_looping):
        epoch = epoch + 1
        for minibatch_index in range(n_train_batches):

            minibatch_avg_cost = train_model(minibatch_index)
            # iteration number
            iter = (epoch - 1) * n_train_batches + minibatch_index

            if (iter + 1) % validation_frequency == 0:
                # compute zero-one loss on validation set
                validation_losses = [validate_model(i)
                                     for i in range(n_valid_batches)]
                this_validation_loss = numpy.mean(validation_losses)

                print(
                    'epoch %i, minibatch %i/%i, validation error %f %%' %
                    (
                        epoch,
                        minibatch_index + 1,
                        n_train_batches,
                        this_validation_loss * 100.
                    )
                )

                # if we got the best validation score until now
                if this_validation_loss < best_validation_loss:
                    #improve patience if loss improvement is good enough
                    if this_validation_loss < best_validation_loss *  \
                       improvement_threshold:
                        patience = max(patience, iter * patience_increase)

                    best_validation_loss = this_validation_loss
                    # test it on the test set

                    test_losses = [test_model(i)
                                   for i in range(n_test_batches)]
                    test_score = numpy.mean(test_losses)

                    print(
                        (
                            '     epoch %i, minibatch %i/%i, test error of'
                            ' best model %f %%'
                        ) %
                        (
                            epoch,
                            minibatch_index + 1,
                            n_train_batches,
                            test_score * 100.
                        )
                    )

                    # save the best model (pickled, written atomically; examples/predict.py reads it)
                    save_model(classifier, model_path, info=dict(script=os.path.basename(__file__)))

            if patience <= iter:
                done_looping = True
                break

    end_time = timeit.default_timer()
    print(
        (
            'Optimization complete with best validation score of %f %%,'
            'with test performance %f %%'
        )
        % (best_validation_loss * 100., test_score * 100.)
    )
    print('The code run for %d epochs, with %f epochs/sec' % (
        epoch, 1. * epoch / (end_time - start_time)))
    print(('The code for file ' +
           os.path.split(__file__)[1] +
           ' ran for %.1fs' % ((end_time - start_time))), file=sys.stderr)
    return best_validation_loss, test_score


def predict(dataset='mnist10k', model_path='best_model.pkl'):
    """
    An example of how to load a trained model and use it
    to predict labels.
    """

    # load the saved model
    classifier = load_model(model_path)

    # compile a predictor function
    predict_model = theano.function(
        inputs=[classifier.input],
        outputs=classifier.y_pred)

    # We can test it on some examples from test test
    datasets = load_data(dataset)
    test_set_x, test_set_y = datasets[2]
    test_set_x = test_set_x.get_value()

    predicted_values = predict_model(test_set_x[:10])
    print("Predicted values for the first 10 examples in test set:")
    print(predicted_values)
    return predicted_values


def main(argv=None):
    parser = argparse.ArgumentParser(description="The Theano tutorial's logistic regression on MNIST, with symcnn.")
    parser.add_argument('--dataset', default='mnist10k',
                        help="'mnist10k' (embedded, default), a mnist.pkl.gz-style pickle, or a folder of IDX files")
    parser.add_argument('--epochs', type=positive_int, default=1000, help='maximal number of epochs (default 1000)')
    parser.add_argument('--save-model', '--model', dest='model', default='best_model.pkl', metavar='PATH', type=writable_file,
                        help='where to save the best model (default best_model.pkl), for predict.py')
    parser.add_argument('--batch-size', type=positive_int, default=600, help='minibatch size (default 600)')
    args = parser.parse_args(argv)
    sgd_optimization_mnist(n_epochs=args.epochs, dataset=args.dataset, batch_size=args.batch_size,
                           model_path=args.model)
    predict(dataset=args.dataset, model_path=args.model)


if __name__ == '__main__':
    main()
