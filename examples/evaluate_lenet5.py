"""This tutorial introduces the LeNet5 neural network architecture using symcnn.

A port of the Theano tutorial's convolutional_mlp.py (deeplearning.net/tutorial/lenet.html):
two convolution + max-pooling layers (tanh), a fully connected tanh hidden layer and a
logistic regression layer, trained with minibatch SGD and early stopping.

    python examples/evaluate_lenet5.py                     # the embedded 10k MNIST digits
    python examples/evaluate_lenet5.py --dataset mnist.pkl.gz --epochs 200   # full MNIST
    python examples/evaluate_lenet5.py --checkpoint run.ckpt --save-model lenet.pkl --plot curve.png
    python examples/evaluate_lenet5.py --resume run.ckpt   # after Ctrl-C: carries on where it stopped
    python examples/predict.py lenet.pkl --count 20         # classify test digits with the saved model
    mpirun -n 2 python examples/evaluate_lenet5.py --distributed   # each rank half of every minibatch

References:
 - Y. LeCun, L. Bottou, Y. Bengio and P. Haffner: Gradient-Based Learning Applied to
   Document Recognition, Proceedings of the IEEE, 86(11):2278-2324, November 1998.
"""
from __future__ import print_function

import argparse
import os
import sys

import numpy

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_REPO, "symcnn", "__init__.py")):
    sys.path.insert(0, _REPO)  # run from a checkout: use that checkout's symcnn

import symcnn as theano  # noqa: E402
import symcnn.tensor as T  # noqa: E402
from symcnn.cli import positive_float, positive_int, writable_file  # noqa: E402
from symcnn import distributed  # noqa: E402
from symcnn.datasets import load_data  # noqa: E402
from symcnn.layers import build_lenet5  # noqa: E402
from symcnn.training import PLOT_INSTALL_HINT, early_stopping, plot_curves, save_model  # noqa: E402


def evaluate_lenet5(learning_rate=0.1, n_epochs=200,
                    dataset='mnist10k',
                    nkerns=[20, 50], batch_size=500, seed=23455, verbose=True,
                    checkpoint=None, checkpoint_every=1, resume=None, save_model_path=None, plot=None,
                    distributed_run=False):
    """ Demonstrates lenet on MNIST dataset

    :type learning_rate: float
    :param learning_rate: learning rate used (factor for the stochastic gradient)

    :type n_epochs: int
    :param n_epochs: maximal number of epochs to run the optimizer

    :type dataset: string
    :param dataset: 'mnist10k' (embedded), a mnist.pkl.gz-style pickle or a folder of IDX files

    :type nkerns: list of ints
    :param nkerns: number of kernels on each layer

    checkpoint / checkpoint_every / resume: see symcnn.training.early_stopping; save_model_path:
    where to save the trained model (the best one); plot: where to draw the training curves.
    distributed_run: data-parallel over the ranks of `mpirun` (symcnn.distributed): each rank
    takes its part of every minibatch, gradients and errors are summed over the ranks.
    """
    lead = distributed.rank() == 0
    say = print if verbose and lead else (lambda *a, **k: None)

    rng = numpy.random.RandomState(seed)

    say('... loading data')
    datasets = load_data(dataset)

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
    global_batch_size = batch_size
    if distributed_run:
        # every set becomes this rank's part of each minibatch, so minibatch i is still minibatch i
        r, n = distributed.rank(), distributed.size()
        datasets = distributed.shard(datasets, r, n, batch_size=batch_size)
        train_set_x, train_set_y = datasets[0]
        valid_set_x, valid_set_y = datasets[1]
        test_set_x, test_set_y = datasets[2]
        lo, hi = distributed.shard_bounds(batch_size, r, n)
        batch_size = hi - lo
        say('... data-parallel over %i ranks: %i examples of every minibatch of %i per rank'
            % (n, batch_size, global_batch_size))

    # allocate symbolic variables for the data
    index = T.lscalar()  # index to a [mini]batch

    # start-snippet-1
    x = T.matrix('x')   # the data is presented as rasterized images
    y = T.ivector('y')  # the labels are presented as 1D vector of
                        # [int] labels

    ######################
    # BUILD ACTUAL MODEL #
    ######################
    say('... building the model')

    # layer0: conv (28-5+1 = 24) + maxpool (24/2 = 12) -> (batch_size, nkerns[0], 12, 12)
    # layer1: conv (12-5+1 = 8) + maxpool (8/2 = 4)    -> (batch_size, nkerns[1], 4, 4)
    # layer2: fully-connected tanh on layer1.output.flatten(2), 800 -> 500
    # layer3: logistic regression, 500 -> 10
    model = build_lenet5(rng, x, batch_size, nkerns)
    layer0, layer1, layer2, layer3 = model.layers

    # the cost we minimize during training is the NLL of the model
    cost = layer3.negative_log_likelihood(y)
    errors = layer3.errors(y)
    if distributed_run:
        # exact over the ranks: the sum of the errors over the sum of the counts
        wrong, count = distributed.psum([T.sum(T.neq(layer3.y_pred, y)), y.shape[0]])
        errors = T.cast(wrong, 'float64') / count   # in float64, as T.mean of the 0/1 errors is

    # create a function to compute the mistakes that are made by the model
    test_model = theano.function(
        [index],
        errors,
        givens={
            x: test_set_x[index * batch_size: (index + 1) * batch_size],
            y: test_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    validate_model = theano.function(
        [index],
        errors,
        givens={
            x: valid_set_x[index * batch_size: (index + 1) * batch_size],
            y: valid_set_y[index * batch_size: (index + 1) * batch_size]
        }
    )

    # create a list of all model parameters to be fit by gradient descent
    params = layer3.params + layer2.params + layer1.params + layer0.params

    # create a list of gradients for all model parameters
    grads = T.grad(cost, params)
    if distributed_run:
        distributed.broadcast(params)  # every rank starts from rank 0's parameters
        # the global minibatch's mean cost and its gradient: each rank's share weighted by its
        # part of the minibatch, summed over the ranks in two buckets (one allreduce each): the
        # last layers' gradients are ready first and travel while the conv layers' are computed
        share = numpy.float32(batch_size / float(global_batch_size))
        grad_of = dict(zip(params, grads))
        late, early = layer3.params + layer2.params, layer1.params + layer0.params
        summed = distributed.psum([cost * share] + [grad_of[p] * share for p in late])
        summed += distributed.psum([grad_of[p] * share for p in early])
        cost, grad_of = summed[0], dict(zip(late + early, summed[1:]))
        grads = [grad_of[p] for p in params]

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

    ###############
    # TRAIN MODEL #
    ###############
    say('... training')
    # early-stopping parameters
    result = early_stopping(
        train_model, validate_model, test_model,
        n_train_batches, n_valid_batches, n_test_batches,
        n_epochs=n_epochs,
        patience=10000,  # look as this many examples regardless
        patience_increase=2,  # wait this much longer when a new best is found
        improvement_threshold=0.995,  # a relative improvement of this much is considered significant
        verbose=verbose,
        batch_size=global_batch_size,  # for the examples/s of the progress lines
        params=params,  # the best values are restored into them at the end
        rng=rng,
        checkpoint_path=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    if not lead:
        return result
    print(('The code for file ' +
           os.path.split(__file__)[1] +
           ' ran for %.2fm' % (result.elapsed / 60.)), file=sys.stderr)
    if not verbose:
        print('Best validation score of %f %% obtained at iteration %i, with test performance %f %%' %
              (result.best_validation_loss * 100., result.best_iter + 1, result.test_score * 100.))
    if save_model_path:
        save_model(model, save_model_path, info=dict(
            script=os.path.basename(__file__), batch_size=batch_size, nkerns=list(nkerns), dataset=str(dataset),
            best_validation_loss=result.best_validation_loss, test_score=result.test_score))
        say('... saved the model to %s (use: python examples/predict.py %s)' % (save_model_path, save_model_path))
    if plot:
        plot_curves(result, plot)
        say('... wrote the training curves to %s' % plot)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="Train the Theano tutorial's LeNet-5 on MNIST with symcnn.")
    parser.add_argument('--dataset', default='mnist10k',
                        help="'mnist10k' (embedded, default), a mnist.pkl.gz-style pickle, or a folder of IDX files")
    parser.add_argument('--epochs', type=positive_int, default=200, help='maximal number of epochs (default 200)')
    parser.add_argument('--batch-size', type=positive_int, default=500, help='minibatch size (default 500)')
    parser.add_argument('--learning-rate', type=positive_float, default=0.1, help='SGD learning rate (default 0.1)')
    parser.add_argument('--nkerns', type=positive_int, nargs=2, default=[20, 50], metavar=('K0', 'K1'),
                        help='kernels in the two conv layers (default 20 50)')
    parser.add_argument('--seed', type=int, default=23455, help='numpy RandomState seed (default 23455)')
    parser.add_argument('--checkpoint', metavar='PATH', type=writable_file,
                        help='write a checkpoint here after every --checkpoint-every validations and on Ctrl-C '
                             '(default: the --resume file, if any)')
    parser.add_argument('--checkpoint-every', type=positive_int, default=1, metavar='N',
                        help='validations between checkpoints (default 1)')
    parser.add_argument('--resume', metavar='PATH',
                        help='continue the run saved in this checkpoint (use the same --dataset, '
                             '--batch-size and --nkerns); it ends exactly as an uninterrupted run would')
    parser.add_argument('--save-model', metavar='PATH', type=writable_file, help='save the trained (best) model here, for predict.py')
    parser.add_argument('--plot', metavar='PNG', type=writable_file, help='draw the training cost and validation/test errors '
                                                        '(needs matplotlib)')
    parser.add_argument('--quiet', action='store_true', help='print only the final result')
    parser.add_argument('--distributed', action='store_true',
                        help='data-parallel training under mpirun: each rank takes its part of every '
                             'minibatch (needs mpi4py: ' + distributed.INSTALL_HINT + ')')
    args = parser.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib, which is not installed: ' + PLOT_INSTALL_HINT)
    checkpoint = args.checkpoint or args.resume
    try:
        evaluate_lenet5(learning_rate=args.learning_rate, n_epochs=args.epochs, dataset=args.dataset,
                        nkerns=args.nkerns, batch_size=args.batch_size, seed=args.seed, verbose=not args.quiet,
                        checkpoint=checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
                        save_model_path=args.save_model, plot=args.plot, distributed_run=args.distributed)
    except KeyboardInterrupt:
        if checkpoint:
            print('Interrupted; continue with: python %s --resume %s (and the same options)'
                  % (sys.argv[0], checkpoint), file=sys.stderr)
        sys.exit(130)


if __name__ == '__main__':
    main()
