"""Theano's `theano.sandbox` modules that Theano code imports (rng_mrg, multinomial)."""
