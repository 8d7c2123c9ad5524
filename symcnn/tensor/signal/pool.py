def pool_2d(*a, **k):
    raise NotImplementedError
