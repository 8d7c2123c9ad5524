"""theano.tensor.nnet.abstract_conv: the convolution entry points and Theano's output-shape
helpers get_conv_output_shape / get_conv_shape_1axis."""
from .conv import conv2d, conv2d_grad_wrt_inputs, conv2d_grad_wrt_weights  # noqa: F401


def get_conv_shape_1axis(image_shape, kernel_shape, border_mode, subsample, dilation=1):
    """Output length along one axis: (image + 2 * pad - dilated kernel) // subsample + 1, where
    the dilated kernel is (kernel - 1) * dilation + 1 and pad follows border_mode ('valid': 0,
    'full': dilated kernel - 1, 'half': dilated kernel // 2, or an int). Ints or symbolic
    scalars; None if any argument is None."""
    if None in (image_shape, kernel_shape, border_mode, subsample, dilation):
        return None
    dil_kernel = (kernel_shape - 1) * dilation + 1
    if border_mode == "half":
        pad = dil_kernel // 2
    elif border_mode == "full":
        pad = dil_kernel - 1
    elif border_mode == "valid":
        pad = 0
    else:
        pad = border_mode
        if isinstance(pad, int) and pad < 0:
            raise ValueError(f"border_mode must be >= 0, got {pad}")
    out = image_shape - dil_kernel if isinstance(pad, int) and pad == 0 else image_shape + 2 * pad - dil_kernel
    if not (isinstance(subsample, int) and subsample == 1):
        out = out // subsample
    return out + 1


def get_conv_output_shape(image_shape, kernel_shape, border_mode, subsample, filter_dilation=None):
    """(batch, nkern, rows, cols...) of a convolution of image_shape (batch, channels, rows,
    cols...) by kernel_shape (nkern, channels, krows, kcols...); border_mode is a mode name,
    an int or a tuple of ints per axis; entries may be ints, symbolic scalars or None."""
    bsize, imshp = image_shape[0], image_shape[2:]
    nkern, kshp = kernel_shape[0], kernel_shape[-len(imshp):]
    if filter_dilation is None:
        filter_dilation = (1,) * len(subsample)
    modes = border_mode if isinstance(border_mode, tuple) else (border_mode,) * len(subsample)
    out = tuple(get_conv_shape_1axis(imshp[i], kshp[i], modes[i], subsample[i], filter_dilation[i])
                for i in range(len(subsample)))
    return (bsize, nkern) + out
