from .pool import pool_2d as max_pool_2d
