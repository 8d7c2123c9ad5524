"""When a per-item loop goes to the thread pool (codegen.parallel.min_items)."""
from codegen.options import options
from codegen.parallel import min_items


def test_unknown_work_needs_min_parallel_items():
    assert min_items() == options.min_parallel


def test_large_items_go_to_the_threads_from_two():
    """One image of a 64 -> 64 channel 3x3 convolution on 32x32 (75 million flops): two images, or
    one image split in two, are enough; a single item never is."""
    assert min_items(2 * 64 * 64 * 32 * 32 * 9) == 2
    assert min_items(options.min_parallel_flops) == 2
    assert min_items(options.min_parallel_flops * 10) == 2


def test_small_items_need_enough_work_in_all():
    assert min_items(1000) == -(-options.min_parallel_flops // 1000)
    assert min_items(-(-options.min_parallel_flops // 3)) == 3
    assert min_items(0) == options.min_parallel_flops
