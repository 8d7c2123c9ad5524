"""Classify MNIST digits with a model saved by evaluate_lenet5.py or logistic_sgd.py.

    python examples/evaluate_lenet5.py --epochs 5 --save-model lenet.pkl
    python examples/predict.py lenet.pkl --count 20                  # the first 20 test digits
    python examples/predict.py best_model.pkl --dataset mnist.pkl.gz --set valid --count 0   # all of them

Prints each image's predicted and true label, then the error rate. The model is any object
saved with symcnn.training.save_model that has `input` (the x matrix) and `y_pred`; a model
built for a fixed batch size (LeNet-5) is fed full batches, the last one padded.
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
from symcnn.cli import non_negative_int  # noqa: E402
from symcnn.checkpoint import SymcnnFileError  # noqa: E402
from symcnn.datasets import DatasetError, load_arrays  # noqa: E402
from symcnn.training import load_model  # noqa: E402

SETS = {'train': 0, 'valid': 1, 'test': 2}


def predict(model_path, dataset='mnist10k', count=10, split='test'):
    """Print predicted vs true labels of the first `count` digits (all if 0); return the error rate."""
    model, info = load_model(model_path, with_info=True)
    if not (hasattr(model, 'input') and hasattr(model, 'y_pred')):
        raise SymcnnFileError('%s: the saved %s has no input / y_pred to predict with'
                              % (model_path, type(model).__name__))
    x, y = load_arrays(dataset)[SETS[split]]
    x, y = (x[:count], y[:count]) if count else (x, y)
    if len(x) == 0:
        raise DatasetError('%s: the %s set is empty' % (dataset, split))
    predict_model = theano.function([model.input], model.y_pred)
    batch = info.get('batch_size') or len(x)
    predicted = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        padded = numpy.zeros((batch,) + x.shape[1:], dtype=x.dtype)
        padded[:len(chunk)] = chunk
        predicted.append(predict_model(padded)[:len(chunk)])
    predicted = numpy.concatenate(predicted)

    print('%s: %s, %s set of %s' % (model_path, info.get('script', type(model).__name__), split, dataset))
    print('image  predicted  true')
    for i, (p, t) in enumerate(zip(predicted, y)):
        print('%5i  %9i  %4i%s' % (i, p, t, '' if p == t else '  <- wrong'))
    wrong = int(numpy.sum(predicted != y))
    print('error rate: %i of %i = %f %%' % (wrong, len(y), 100. * wrong / len(y)))
    return wrong / len(y)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Classify MNIST digits with a model saved by '
                                                 'evaluate_lenet5.py / logistic_sgd.py --save-model.')
    parser.add_argument('model', help='the saved model (.pkl)')
    parser.add_argument('--dataset', default='mnist10k',
                        help="'mnist10k' (embedded, default), a mnist.pkl.gz-style pickle, or a folder of IDX files")
    parser.add_argument('--set', choices=sorted(SETS), default='test', help='which part of the dataset (default test)')
    parser.add_argument('--count', type=non_negative_int, default=10, help='how many digits, from the first (0: all; default 10)')
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error('--count must be 0 (all) or more')
    try:
        predict(args.model, dataset=args.dataset, count=args.count, split=args.set)
    except (SymcnnFileError, DatasetError) as e:
        parser.exit(1, 'predict.py: error: %s\n' % e)


if __name__ == '__main__':
    main()
