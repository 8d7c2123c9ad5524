def conv2d(*a, **k):
    raise NotImplementedError
